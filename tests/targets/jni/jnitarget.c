/* Native half of JniTarget: each site is its own noinline function so its
 * frame names the site in memdrift's stacks. Built twice (build.sh): with
 * frame pointers, and -O2 -fomit-frame-pointer (libjnitarget_nofp.so),
 * where Java_JniTarget_tailLeak ends in a tail call into NewGlobalRef and
 * is not on the stack at all. */
#include <jni.h>
#include <pthread.h>
#include <stdlib.h>

#define POOL_MAX (1 << 22)

struct pool {
	jobject *v;
	long *seq;      /* creation number of each held ref */
	long n;
	long created, deleted;
	long mark;      /* refs numbered >= mark were created after "mark" */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct pool leaked, balanced_pool, weak_pool;

static int push(struct pool *p, jobject ref)
{
	if (!p->v && !(p->v = calloc(POOL_MAX, sizeof(jobject))))
		return -1;
	if (!p->seq && !(p->seq = calloc(POOL_MAX, sizeof(long))))
		return -1;
	if (p->n == POOL_MAX)
		return -1;
	p->seq[p->n] = p->created++;
	p->v[p->n++] = ref;
	return 0;
}

__attribute__((noinline)) static void leak_site_create(JNIEnv *env, jobject o)
{
	jobject ref = (*env)->NewGlobalRef(env, o);

	if (ref && push(&leaked, ref))
		(*env)->DeleteGlobalRef(env, ref);
}

__attribute__((noinline)) static void balanced_site_create(JNIEnv *env, jobject o)
{
	jobject ref = (*env)->NewGlobalRef(env, o);

	if (ref && push(&balanced_pool, ref))
		(*env)->DeleteGlobalRef(env, ref);
}

__attribute__((noinline)) static void weak_site_create(JNIEnv *env, jobject o)
{
	jweak ref = (*env)->NewWeakGlobalRef(env, o);

	if (ref && push(&weak_pool, ref))
		(*env)->DeleteWeakGlobalRef(env, ref);
}

__attribute__((noinline)) static void release_down_to(JNIEnv *env, struct pool *p, long keep,
						       int weak)
{
	while (p->n > keep) {
		jobject ref = p->v[--p->n];

		if (weak)
			(*env)->DeleteWeakGlobalRef(env, ref);
		else
			(*env)->DeleteGlobalRef(env, ref);
		p->deleted++;
	}
}

JNIEXPORT void JNICALL Java_JniTarget_leak(JNIEnv *env, jclass c, jobject o)
{
	pthread_mutex_lock(&lock);
	leak_site_create(env, o);
	pthread_mutex_unlock(&lock);
}

/* The same leaking function from a second native caller: one site, two
 * stacks (tests/e2e/test_jni_agree.py). */
JNIEXPORT void JNICALL Java_JniTarget_leakOther(JNIEnv *env, jclass c, jobject o)
{
	pthread_mutex_lock(&lock);
	leak_site_create(env, o);
	pthread_mutex_unlock(&lock);
}

JNIEXPORT void JNICALL Java_JniTarget_balanced(JNIEnv *env, jclass c, jobject o, jint keep)
{
	pthread_mutex_lock(&lock);
	balanced_site_create(env, o);
	if (keep >= 0)
		release_down_to(env, &balanced_pool, keep, 0);
	pthread_mutex_unlock(&lock);
}

JNIEXPORT void JNICALL Java_JniTarget_weak(JNIEnv *env, jclass c, jobject o, jint keep)
{
	pthread_mutex_lock(&lock);
	weak_site_create(env, o);
	if (keep >= 0)
		release_down_to(env, &weak_pool, keep, 1);
	pthread_mutex_unlock(&lock);
}

static long held_since_mark(const struct pool *p)
{
	long k = 0;

	for (long i = 0; i < p->n; i++)
		k += p->seq[i] >= p->mark;
	return k;
}

JNIEXPORT void JNICALL Java_JniTarget_mark(JNIEnv *env, jclass c)
{
	pthread_mutex_lock(&lock);
	leaked.mark = leaked.created;
	balanced_pool.mark = balanced_pool.created;
	weak_pool.mark = weak_pool.created;
	pthread_mutex_unlock(&lock);
}

JNIEXPORT jlongArray JNICALL Java_JniTarget_truth(JNIEnv *env, jclass c)
{
	jlong t[10];
	jlongArray a = (*env)->NewLongArray(env, 10);

	pthread_mutex_lock(&lock);
	t[0] = leaked.n;
	t[1] = balanced_pool.n;
	t[2] = weak_pool.n;
	t[3] = leaked.created + balanced_pool.created;
	t[4] = leaked.deleted + balanced_pool.deleted;
	t[5] = weak_pool.created;
	t[6] = weak_pool.deleted;
	t[7] = held_since_mark(&leaked);
	t[8] = held_since_mark(&balanced_pool);
	t[9] = held_since_mark(&weak_pool);
	pthread_mutex_unlock(&lock);
	if (a)
		(*env)->SetLongArrayRegion(env, a, 0, 10, t);
	return a;
}

JNIEXPORT void JNICALL Java_JniTarget_releaseAll(JNIEnv *env, jclass c)
{
	pthread_mutex_lock(&lock);
	release_down_to(env, &leaked, 0, 0);
	release_down_to(env, &balanced_pool, 0, 0);
	release_down_to(env, &weak_pool, 0, 1);
	pthread_mutex_unlock(&lock);
}

/* The ref is returned to Java (which sees the object) and never deleted:
 * one leaked global ref per call, counted by the Java side. At -O2 this is
 * a tail call (jmp *NewGlobalRef): only the JVM's native wrapper for
 * JniTarget.tailLeak is on the stack. */
JNIEXPORT jobject JNICALL Java_JniTarget_tailLeak(JNIEnv *env, jclass c, jobject o)
{
	return (*env)->NewGlobalRef(env, o);
}
