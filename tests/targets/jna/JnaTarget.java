// JNA (Debian's libjna-java + libjnidispatch, a JNI library no one here
// wrote) as a JNI-reference test target for memdrift (tests/e2e/test_jni.py).
// Each JNA callback turned into a native function pointer makes one weak
// global reference in libjnidispatch (create_callback, under the native
// method com.sun.jna.Native.createNativeCallback); closing its
// CallbackReference deletes it. Commands on stdin:
//   keep N    N new callbacks, kept (their refs never deleted)
//   churn N   N new callbacks, each closed right away
//   mark      truth's *_new count from here
// After each command one JSON line with the truth this program counts.
import com.sun.jna.Callback;
import com.sun.jna.CallbackReference;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

public class JnaTarget {
    // int arguments only: JNA 5.13 makes, for each argument it converts
    // (Pointer, String, Structure...), one more weak global ref per callback
    // and frees its table without deleting them; see tests/e2e/test_jni.py
    public interface Compare extends Callback {
        int invoke(int a, int b);
    }

    static final List<Compare> kept = new ArrayList<>();
    static long churned, keptMark, churnMark;
    static Map<?, ?> callbackMap;

    static Compare newCallback(final int id) {
        return (a, b) -> id;
    }

    static void keep(int n) {
        for (int i = 0; i < n; i++) {
            Compare c = newCallback(kept.size());
            CallbackReference.getFunctionPointer(c); // one weak global ref
            kept.add(c);
        }
    }

    static void churn(int n) throws Exception {
        for (int i = 0; i < n; i++) {
            Compare c = newCallback(-i);
            CallbackReference.getFunctionPointer(c);
            CallbackReference ref = (CallbackReference) callbackMap.get(c);
            if (ref == null)
                throw new IllegalStateException("no CallbackReference for a new callback");
            ref.close(); // deletes its weak global ref
            churned++;
        }
    }

    static String truth(int seq) {
        return String.format("{\"seq\":%d,\"kept\":%d,\"churned\":%d,\"kept_new\":%d,\"churned_new\":%d}",
                seq, kept.size(), churned, kept.size() - keptMark, churned - churnMark);
    }

    public static void main(String[] args) throws Exception {
        Field f = CallbackReference.class.getDeclaredField("callbackMap");
        f.setAccessible(true);
        callbackMap = (Map<?, ?>) f.get(null);
        keep(1); // JNA's own start-up (libjnidispatch loaded, its classes)
        kept.clear();
        System.out.println("{\"ready\":true,\"pid\":" + ProcessHandle.current().pid() + "}");
        System.out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        int seq = 0;
        String line;
        while ((line = in.readLine()) != null) {
            String[] w = line.trim().split("\\s+");
            if (w[0].equals("keep"))
                keep(Integer.parseInt(w[1]));
            else if (w[0].equals("churn"))
                churn(Integer.parseInt(w[1]));
            else if (w[0].equals("mark")) {
                keptMark = kept.size();
                churnMark = churned;
            } else if (w[0].equals("quit"))
                System.exit(0);
            System.out.println(truth(++seq));
            System.out.flush();
        }
    }
}
