/*
 * callgrind_stages: one C pass-through function per stage of a request (stage_head(f, *args)
 * calls f(*args)), so that callgrind, which sees C functions only, counts each stage's Python
 * code inclusively under a name of its own. Built and used by bench/request_cost.py --stages only.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define STAGE(name) \
    __attribute__((noinline)) PyObject *stage_##name(PyObject *self, PyObject *const *args, \
                                                     Py_ssize_t nargs, PyObject *kwnames) { \
        return PyObject_Vectorcall(args[0], args + 1, PyVectorcall_NARGS(nargs) - 1, kwnames); \
    }
#define ENTRY(name) {#name, (PyCFunction)(void (*)(void))stage_##name, METH_FASTCALL | METH_KEYWORDS, NULL},

#define STAGES(X) X(read) X(head) X(content) X(process) X(render) X(looks_like_token) X(fingerprint) \
    X(cache) X(raw_body) X(decode_content) X(decode) X(request_headers) X(natural_key) X(publish) \
    X(normalize) X(sink_write) X(flush) X(flushed) X(send) X(log_request) X(log_observer) \
    X(log_thread_write) X(write_reply) X(request_write) X(finish) X(site_log) X(record) X(hold_body) \
    X(do_read) X(do_write) X(run_until_current) X(metrics_request) \
    X(twisted_line) X(header) X(all_headers) X(new_request) X(date) X(resource) X(check_key) X(track) \
    X(client_of) X(group_write) X(group_next) X(published) X(written) X(emit) X(text_line) \
    X(write_through) X(write_headers) X(http_finish) X(redact) X(first_event) X(delivery_new) X(log_add)

STAGES(STAGE)

static PyMethodDef methods[] = {STAGES(ENTRY) {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "callgrind_stages", NULL, -1, methods};
PyMODINIT_FUNC PyInit_callgrind_stages(void) { return PyModule_Create(&module); }
