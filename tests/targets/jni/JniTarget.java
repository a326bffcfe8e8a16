// JNI reference test target for memdrift (tests/e2e/test_jni.py).
// Reads commands on stdin; each "run N" does N rounds on T threads, then
// prints the truth the native library keeps (outstanding refs per site) at a
// quiet point: no JNI ref call happens until the next command.
//   leak      1 global ref per round, never deleted
//   balanced  5 global refs per round, deleted down to (round % 7) kept
//   weak      3 weak refs per round, deleted down to (round % 5) kept
//   tail      1 global ref per round made by a native method that tail-calls
//             NewGlobalRef and returns it; never deleted (counted here)
// -Djni.lib=NAME loads libNAME.so (jnitarget_nofp: built without frame pointers).
// "mark": from now on truth also counts, per site, the held refs created
// after the mark (leak_new, ...): what a tracer attached before it must see.
// "other N": N leak refs made by leak_site_create called from a second
// native method (leakOther): one site, two stacks (tests/e2e/test_jni_agree.py).
// "quit" deletes everything, checks the counts return to zero, exits 0.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.concurrent.atomic.AtomicLong;

public class JniTarget {
    static native void leak(Object o);
    static native void leakOther(Object o); // leak's site, from another native caller
    static native void balanced(Object o, int keep);
    static native void weak(Object o, int keep);
    static native long[] truth();     // leak, balanced, weak outstanding; then created/deleted
    static native void releaseAll();
    static native void mark();        // truth's *_new: refs created after this
    static native Object tailLeak(Object o); // a new global ref to o, never deleted
    static final AtomicLong tail = new AtomicLong();
    static volatile long tailMark;
    static long lastRunNs; // wall time of the last "run" (scripts/bench/jni-cost)

    static void round(int i) {
        leak(new Object());
        for (int k = 0; k < 5; k++)
            balanced(new int[1], k == 4 ? i % 7 : -1);
        for (int k = 0; k < 3; k++)
            weak(new Object(), k == 2 ? i % 5 : -1);
        if (tailLeak(new Object()) != null)
            tail.incrementAndGet();
    }

    static String truthJson(int seq) {
        long[] t = truth();
        return String.format("{\"seq\":%d,\"leak\":%d,\"balanced\":%d,\"weak\":%d," +
                "\"global_created\":%d,\"global_deleted\":%d,\"weak_created\":%d,\"weak_deleted\":%d," +
                "\"leak_new\":%d,\"balanced_new\":%d,\"weak_new\":%d,\"tail\":%d,\"tail_new\":%d,\"run_ns\":%d}",
                seq, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9],
                tail.get(), tail.get() - tailMark, lastRunNs);
    }

    public static void main(String[] args) throws Exception {
        System.loadLibrary(System.getProperty("jni.lib", "jnitarget"));
        int threads = args.length > 0 ? Integer.parseInt(args[0]) : 1;
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        System.out.println("{\"ready\":true,\"pid\":" + ProcessHandle.current().pid() + "}");
        System.out.flush();
        int seq = 0;
        String line;
        while ((line = in.readLine()) != null) {
            String[] w = line.trim().split("\\s+");
            if (w[0].equals("run")) {
                final int n = Integer.parseInt(w[1]);
                long t0 = System.nanoTime();
                Thread[] ts = new Thread[threads];
                for (int j = 0; j < threads; j++) {
                    ts[j] = new Thread(() -> { for (int i = 0; i < n; i++) round(i); });
                    ts[j].start();
                }
                for (Thread t : ts)
                    t.join();
                lastRunNs = System.nanoTime() - t0;
                System.out.println(truthJson(++seq));
            } else if (w[0].equals("other")) {
                for (int i = Integer.parseInt(w[1]); i > 0; i--)
                    leakOther(new Object());
                System.out.println(truthJson(++seq));
            } else if (w[0].equals("mark")) {
                mark();
                tailMark = tail.get();
                System.out.println(truthJson(++seq));
            } else if (w[0].equals("truth")) {
                System.out.println(truthJson(++seq));
            } else if (w[0].equals("quit")) {
                releaseAll();
                long[] t = truth();
                boolean ok = t[0] == 0 && t[1] == 0 && t[2] == 0 && t[3] == t[4] && t[5] == t[6];
                System.out.println("{\"bye\":true,\"ok\":" + ok + "}");
                System.exit(ok ? 0 : 3);
            }
            System.out.flush();
        }
    }
}
