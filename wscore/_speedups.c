/* Optional compiled masking for wscore (RFC 6455, section 5.3).
 *
 * mask(data, key) -> bytes: data XOR key repeated, 8 bytes at a time. Large
 * buffers are processed without the GIL so other threads keep running. The
 * pure-Python fallback in _framing.py gives the same results. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *
mask(PyObject *self, PyObject *args)
{
    Py_buffer data, key;
    PyObject *result;
    if (!PyArg_ParseTuple(args, "y*y*:mask", &data, &key)) {
        return NULL;
    }
    if (key.len != 4) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "mask key must be 4 bytes");
        return NULL;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result != NULL) {
        const unsigned char *in = (const unsigned char *)data.buf;
        const unsigned char *k = (const unsigned char *)key.buf;
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        Py_ssize_t n = data.len, i = 0;
        unsigned char k8b[8];
        uint64_t k8, w;
        for (int j = 0; j < 8; j++) {
            k8b[j] = k[j & 3];
        }
        memcpy(&k8, k8b, 8);
        if (n >= 65536) {
            Py_BEGIN_ALLOW_THREADS
            for (; i + 8 <= n; i += 8) {
                memcpy(&w, in + i, 8);
                w ^= k8;
                memcpy(out + i, &w, 8);
            }
            for (; i < n; i++) {
                out[i] = in[i] ^ k[i & 3];
            }
            Py_END_ALLOW_THREADS
        } else {
            for (; i + 8 <= n; i += 8) {
                memcpy(&w, in + i, 8);
                w ^= k8;
                memcpy(out + i, &w, 8);
            }
            for (; i < n; i++) {
                out[i] = in[i] ^ k[i & 3];
            }
        }
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&key);
    return result;
}

static PyMethodDef methods[] = {
    {"mask", mask, METH_VARARGS, "XOR data with a 4-byte key repeated."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "wscore._speedups", "Compiled helpers for wscore.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
