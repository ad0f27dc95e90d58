/* Optional compiled helper for the threaded transport (Linux).
 *
 * recv(fd, size) -> bytes, or None when the socket's SO_RCVTIMEO passed first.
 * poll(fd, events, timeout_ms) -> the events that came (0: none in time, or a
 * signal woke it and its handlers returned).
 *
 * Like socket.recv() and select.poll(), they wait without the GIL. Unlike them, a
 * thread that wakes
 * queues on a plain mutex, the gate, before it asks for the GIL again: at most
 * one such thread at a time waits for the GIL. CPython's GIL waiters each wake
 * every switch interval (5 ms) to check the GIL; thousands of readers waking at
 * once (their park time passing during a burst of connections) kept the run
 * queue so full that the GIL's holder got almost no CPU and the server froze.
 * Behind the gate they sleep in an untimed futex wait instead. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/types.h>

static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;

/* Take the GIL back through the gate. */
static void
restore(PyThreadState *state)
{
    pthread_mutex_lock(&gate);
    PyEval_RestoreThread(state);
    pthread_mutex_unlock(&gate);
}

static PyObject *
gated_recv(PyObject *self, PyObject *args)
{
    int fd;
    Py_ssize_t size;
    PyObject *result;
    ssize_t n;
    int error;
    PyThreadState *state;

    if (!PyArg_ParseTuple(args, "in:recv", &fd, &size)) {
        return NULL;
    }
    if (size <= 0) {
        PyErr_SetString(PyExc_ValueError, "size must be positive");
        return NULL;
    }
    result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL) {
        return NULL;
    }
    for (;;) {
        state = PyEval_SaveThread();
        n = recv(fd, PyBytes_AS_STRING(result), (size_t)size, 0);
        error = errno;
        restore(state);
        if (n >= 0) {
            break;
        }
        if (error == EINTR) {
            if (PyErr_CheckSignals() < 0) {
                Py_DECREF(result);
                return NULL;
            }
            continue;
        }
        Py_DECREF(result);
        if (error == EAGAIN || error == EWOULDBLOCK) {
            Py_RETURN_NONE;
        }
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (n != size && _PyBytes_Resize(&result, n) < 0) {
        return NULL;
    }
    return result;
}

static PyObject *
gated_poll(PyObject *self, PyObject *args)
{
    int fd, events, timeout, n, error;
    struct pollfd entry;
    PyThreadState *state;

    if (!PyArg_ParseTuple(args, "iii:poll", &fd, &events, &timeout)) {
        return NULL;
    }
    entry.fd = fd;
    entry.events = (short)events;
    entry.revents = 0;
    state = PyEval_SaveThread();
    n = poll(&entry, 1, timeout);
    error = errno;
    restore(state);
    if (n < 0) {
        if (error == EINTR) {
            if (PyErr_CheckSignals() < 0) {
                return NULL;
            }
            return PyLong_FromLong(0);
        }
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(n > 0 ? entry.revents : 0);
}

static PyMethodDef methods[] = {
    {"recv", gated_recv, METH_VARARGS,
     "recv(fd, size): a blocking recv() that takes the GIL back through a gate; "
     "None if SO_RCVTIMEO passed."},
    {"poll", gated_poll, METH_VARARGS,
     "poll(fd, events, timeout_ms): poll() one descriptor, taking the GIL back "
     "through the gate; the events that came, 0 if none."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "transports._gate", "Compiled helper for the threaded transport.",
    -1, methods,
};

/* A child forked while some thread held the gate would find it locked forever. */
static void
reset_in_child(void)
{
    pthread_mutex_init(&gate, NULL);
}

PyMODINIT_FUNC
PyInit__gate(void)
{
    static int registered = 0;
    if (!registered) {
        if (pthread_atfork(NULL, NULL, reset_in_child) != 0) {
            PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
            return NULL;
        }
        registered = 1;
    }
    return PyModule_Create(&module);
}
