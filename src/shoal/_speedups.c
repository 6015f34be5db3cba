/*
 * shoal._speedups: compiled helpers for three hot paths, all optional (shoal
 * gives the same answers without them, only slower).
 *
 * SketchTouch is W-TinyLFU's hit path (see below and shoal.policy.tinylfu).
 *
 * probe_owner(points, starts, shift, point, probes, mask) is the multi-probe
 * ring lookup of shoal.ring (see there for the rule, and _probe_owner there
 * for the same code in Python).
 *
 * simple_get(data, limit[, credential]) returns the request target of `data` when `data` is
 * exactly one whole request of the shape most clients send for a read:
 *
 *     "GET " target " HTTP/1.1" CRLF *( field-name ":" field-value CRLF ) CRLF
 *
 * with a target of RFC 3986 path and query characters starting with "/", field
 * names that are tokens and none of the fields that change how a request is
 * framed or whether the connection stays open (Content-Length,
 * Transfer-Encoding, Connection, Proxy-Connection, Upgrade, Expect), field
 * values of visible ASCII, space and tab, and no more than `limit` bytes in
 * all. For anything else (another method or version, a body, a fragment or
 * other characters, a partial or pipelined read, a bare LF, obs-fold, bytes
 * above 0x7F, data that is not bytes) it returns None, and the server feeds
 * the data to its full parser (httptools) as usual. Every request it accepts
 * is one httptools parses as the same keep-alive HTTP/1.1 GET without a body:
 * it recognizes a strict subset of the grammar, never a wider one, and the
 * tests check this against httptools. It exists for speed: the server answers
 * such a request (a cache hit) without the parser's callbacks into Python.
 *
 * simple_get(data, limit, credential) also requires, when `credential` is not
 * None, exactly one Authorization field whose value (without the spaces and
 * tabs around it) is `credential`, compared in constant time (every byte, no
 * early exit); an empty `credential` matches nothing. The server passes the
 * value it last verified on the connection, so a client that keeps sending the
 * same token is not verified again.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Byte classes: a field-name character (tchar), a field-value character
 * (HTAB, SP, VCHAR) and a request-target character (unreserved, sub-delims,
 * ":", "@", "%", "/", "?"). */
static unsigned char is_tchar[256];
static unsigned char is_vchar[256];
static unsigned char is_target[256];

static void
fill(unsigned char *table, const char *members)
{
    for (; *members; members++) {
        table[(unsigned char)*members] = 1;
    }
}

static void
init_tables(void)
{
    for (int c = '0'; c <= '9'; c++) {
        is_tchar[c] = is_target[c] = 1;
    }
    for (int c = 'a'; c <= 'z'; c++) {
        is_tchar[c] = is_target[c] = 1;
        is_tchar[c - 32] = is_target[c - 32] = 1;
    }
    fill(is_tchar, "!#$%&'*+-.^_`|~");
    fill(is_target, "-._~!$&'()*+,;=:@%/?");
    for (int c = 0x20; c < 0x7f; c++) {
        is_vchar[c] = 1;
    }
    is_vchar['\t'] = 1;
}

/* Whether the field name [name, name + len) equals `lower` (lower case) in
 * ASCII, case-insensitively. */
static int
name_is(const unsigned char *name, Py_ssize_t len, const char *lower, Py_ssize_t size)
{
    if (len != size) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        unsigned char c = name[i];
        if (c >= 'A' && c <= 'Z') {
            c += 32;
        }
        if (c != (unsigned char)lower[i]) {
            return 0;
        }
    }
    return 1;
}

#define NAME_IS(name, len, lower) name_is((name), (len), (lower), (Py_ssize_t)sizeof(lower) - 1)

/* The fields that frame a body, ask for an interim answer, or decide whether
 * the connection stays open or changes protocol: such requests take the full
 * parser. */
static int
is_special(const unsigned char *name, Py_ssize_t len)
{
    switch (len) {
    case 6:
        return NAME_IS(name, len, "expect");
    case 7:
        return NAME_IS(name, len, "upgrade");
    case 10:
        return NAME_IS(name, len, "connection");
    case 14:
        return NAME_IS(name, len, "content-length");
    case 16:
        return NAME_IS(name, len, "proxy-connection");
    case 17:
        return NAME_IS(name, len, "transfer-encoding");
    default:
        return 0;
    }
}

/* Whether the one Authorization field value [value, value_end) of a request
 * (`count` such fields) is `credential` without its surrounding spaces and tabs:
 * compared in constant time for a given length (every byte is looked at). */
static int
credential_matches(const unsigned char *value, const unsigned char *value_end, int count,
                   const unsigned char *credential, Py_ssize_t size)
{
    if (count != 1 || size == 0) {
        return 0;
    }
    while (value < value_end && (*value == ' ' || *value == '\t')) {
        value++;
    }
    while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t')) {
        value_end--;
    }
    if (value_end - value != size) {
        return 0;
    }
    unsigned char differ = 0;
    for (Py_ssize_t i = 0; i < size; i++) {
        differ |= (unsigned char)(value[i] ^ credential[i]);
    }
    return differ == 0;
}

static const char REQUEST_LINE_END[] = " HTTP/1.1\r\n";
#define REQUEST_LINE_END_SIZE ((Py_ssize_t)sizeof(REQUEST_LINE_END) - 1)

static PyObject *
simple_get(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 && nargs != 3) {
        PyErr_Format(PyExc_TypeError, "simple_get() takes 2 or 3 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *data = args[0];
    Py_ssize_t limit = PyLong_AsSsize_t(args[1]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    /* The Authorization value to require (want), and where the request has one. */
    int want = 0;
    const unsigned char *credential = NULL;
    Py_ssize_t credential_size = 0;
    if (nargs == 3 && args[2] != Py_None) {
        if (!PyBytes_Check(args[2])) {
            PyErr_SetString(PyExc_TypeError, "simple_get() credential must be bytes or None");
            return NULL;
        }
        want = 1;
        credential = (const unsigned char *)PyBytes_AS_STRING(args[2]);
        credential_size = PyBytes_GET_SIZE(args[2]);
    }
    int authorizations = 0;
    const unsigned char *auth = NULL;
    const unsigned char *auth_end = NULL;
    if (!PyBytes_Check(data)) {
        Py_RETURN_NONE; /* a transport that hands over another buffer type: the parser */
    }
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    if (size > limit) {
        Py_RETURN_NONE;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(data);
    const unsigned char *end = p + size;
    /* "GET /": the shortest whole request is "GET / HTTP/1.1\r\n\r\n". */
    if (size < 18 || memcmp(p, "GET /", 5) != 0) {
        Py_RETURN_NONE;
    }
    const unsigned char *target = p + 4;
    const unsigned char *q = p + 5;
    while (q < end && is_target[*q]) {
        q++;
    }
    const unsigned char *target_end = q;
    if (end - q < REQUEST_LINE_END_SIZE + 2 ||
        memcmp(q, REQUEST_LINE_END, REQUEST_LINE_END_SIZE) != 0) {
        Py_RETURN_NONE;
    }
    q += REQUEST_LINE_END_SIZE;
    for (;;) {
        /* Here q starts a line, and at least two bytes remain. */
        if (q[0] == '\r') {
            if (q[1] != '\n' || q + 2 != end) {
                Py_RETURN_NONE;
            }
            if (want && !credential_matches(auth, auth_end, authorizations, credential,
                                            credential_size)) {
                Py_RETURN_NONE;
            }
            return PyBytes_FromStringAndSize((const char *)target, target_end - target);
        }
        const unsigned char *name = q;
        while (q < end && is_tchar[*q]) {
            q++;
        }
        if (q == name || q == end || *q != ':' || is_special(name, q - name)) {
            Py_RETURN_NONE;
        }
        int is_auth = want && NAME_IS(name, q - name, "authorization");
        q++;
        const unsigned char *value = q;
        while (q < end && is_vchar[*q]) {
            q++;
        }
        if (is_auth) { /* the value, trimmed by credential_matches */
            authorizations++;
            auth = value;
            auth_end = q;
        }
        /* The field's CRLF and at least the CRLF that ends the head. */
        if (end - q < 4 || q[0] != '\r' || q[1] != '\n') {
            Py_RETURN_NONE;
        }
        q += 2;
    }
}

PyDoc_STRVAR(simple_get_doc,
"simple_get(data, limit, credential=None, /)\n--\n\n"
"The request target of ``data`` if it is exactly one simple keep-alive\n"
"HTTP/1.1 GET of at most ``limit`` bytes (see the module), else None; with a\n"
"``credential``, only if its one Authorization field has that value.");

/* The splitmix64 finalizer: the step between probes is drawn from the key point. */
static inline uint64_t
mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t
point_at(const unsigned char *points, Py_ssize_t index)
{
    uint64_t value;
    memcpy(&value, points + index * 8, 8);
    return value;
}

static inline Py_ssize_t
start_at(const unsigned char *starts, Py_ssize_t slot)
{
    uint32_t value;
    memcpy(&value, starts + slot * 4, 4);
    return (Py_ssize_t)value;
}

/* The index of the first point >= probe in [low, high), or high when there is none. */
static inline Py_ssize_t
lower_bound(const unsigned char *points, Py_ssize_t low, Py_ssize_t high, uint64_t probe)
{
    Py_ssize_t count = high - low;
    while (count > 0) {
        Py_ssize_t half = count / 2;
        if (point_at(points, low + half) < probe) {
            low += half + 1;
            count -= half + 1;
        }
        else {
            count = half;
        }
    }
    return low;
}

static int
as_u64(PyObject *object, uint64_t *value)
{
    *value = PyLong_AsUnsignedLongLong(object);
    return *value == (uint64_t)-1 && PyErr_Occurred() ? -1 : 0;
}

static PyObject *
probe_owner(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    uint64_t shift, point, probes, mask;
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError, "probe_owner() takes 6 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!PyBytes_Check(args[0]) || PyBytes_GET_SIZE(args[0]) % 8 != 0
        || !PyBytes_Check(args[1]) || PyBytes_GET_SIZE(args[1]) % 4 != 0) {
        PyErr_SetString(PyExc_TypeError,
                        "probe_owner(): points must be bytes of uint64, starts of uint32");
        return NULL;
    }
    if (as_u64(args[2], &shift) || as_u64(args[3], &point) || as_u64(args[4], &probes)
        || as_u64(args[5], &mask)) {
        return NULL;
    }
    const unsigned char *points = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    const unsigned char *starts = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    Py_ssize_t count = PyBytes_GET_SIZE(args[0]) / 8;
    Py_ssize_t slots = PyBytes_GET_SIZE(args[1]) / 4 - 1;
    if (count == 0) {
        return PyLong_FromLong(0);
    }
    if (shift > 63 || slots < 1 || (mask >> shift) >= (uint64_t)slots) {
        PyErr_SetString(PyExc_ValueError, "probe_owner(): starts do not cover the hash space");
        return NULL;
    }
    uint64_t step = (mix64(point) & mask) | 1;
    uint64_t best = 0;
    Py_ssize_t found = 0;
    uint64_t probe = point & mask;
    for (uint64_t i = 0; i < probes; i++) {
        Py_ssize_t slot = (Py_ssize_t)(probe >> shift);
        Py_ssize_t index =
            lower_bound(points, start_at(starts, slot), start_at(starts, slot + 1), probe);
        uint64_t distance;
        if (index < count) {
            distance = point_at(points, index) - probe;
        }
        else {
            index = 0;
            distance = (point_at(points, 0) - probe) & mask;
        }
        /* Strictly closer: on a tie the earlier probe wins. */
        if (i == 0 || distance < best) {
            best = distance;
            found = index;
        }
        probe = (probe + step) & mask;
    }
    return PyLong_FromSsize_t(found);
}

PyDoc_STRVAR(probe_owner_doc,
"probe_owner(points, starts, shift, point, probes, mask, /)\n--\n\n"
"The index in ``points`` (sorted uint64 values, native byte order) of the\n"
"ring point that follows one of the key's ``probes`` probes most closely;\n"
"0 for no points. ``starts`` (uint32) holds, for each slot of the hash\n"
"space (``probe >> shift``) and one past the last, the index of the first\n"
"point in or after it. See shoal.ring.");

/* ------------------------------------------------------------------------
 * sketch_touch: W-TinyLFU's hit path (shoal.policy.tinylfu), the same steps
 * as the Python closure TinyLFUPolicy._make_touch builds:
 *
 *   count the hit in the frequency sketch (FrequencySketch.increment_seen:
 *   4 byte counters of a bytearray, saturating at 15, and what
 *   sketch.count_added() does when one rose), count it in hits[0], replay it through the miniature
 *   caches when the key is sampled (simulate(key, None)), then move the key
 *   to the most recent end of its region: protected.move_to_end(key),
 *   window.move_to_end(key), or promote(key) for a key on probation.
 *
 * Python's shifts of negative ints are arithmetic: so are these, on the
 * hash's two's complement bits, so that both paths pick the same counters.
 */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *table;          /* bytearray of counters; len is a power of two */
    PyObject *hash_fn;        /* NULL: the built-in hash */
    PyObject *counts;         /* sketch.counts: [increments, sample size] */
    PyObject *reset;          /* sketch.reset */
    PyObject *protected_;     /* OrderedDict */
    PyObject *window;         /* OrderedDict */
    PyObject *protected_move; /* protected.move_to_end */
    PyObject *window_move;    /* window.move_to_end */
    PyObject *promote;        /* policy._promote */
    PyObject *simulate;       /* policy._simulate */
    PyObject *hits;           /* list: [hits] */
    PyObject *sampling;       /* list: [mask, target] */
} Toucher;

static inline uint64_t
shift_right(uint64_t bits, int negative, int n)
{
    return negative ? ~((~bits) >> n) : bits >> n;
}

/* The hash of key as two's complement bits and a sign; -1 on error. */
static int
hash_bits(Toucher *self, PyObject *key, uint64_t *bits, int *negative)
{
    if (self->hash_fn == NULL) {
        Py_hash_t h = PyObject_Hash(key);
        if (h == -1 && PyErr_Occurred()) {
            return -1;
        }
        *bits = (uint64_t)(int64_t)h;
        *negative = h < 0;
        return 0;
    }
    PyObject *result = PyObject_CallOneArg(self->hash_fn, key);
    if (result == NULL) {
        return -1;
    }
    if (!PyLong_Check(result)) {
        Py_DECREF(result);
        PyErr_SetString(PyExc_TypeError, "the sketch's hash must return an int");
        return -1;
    }
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(result, &overflow);
    if (overflow == 0) {
        if (value == -1 && PyErr_Occurred()) {
            Py_DECREF(result);
            return -1;
        }
        *bits = (uint64_t)value;
        *negative = value < 0;
    }
    else {
        /* Beyond int64: its low 64 bits, and its sign. */
        *bits = PyLong_AsUnsignedLongLongMask(result);
        *negative = overflow < 0;
        if (*bits == (uint64_t)-1 && PyErr_Occurred()) {
            Py_DECREF(result);
            return -1;
        }
    }
    Py_DECREF(result);
    return 0;
}

static PyObject *
call_one(PyObject *function, PyObject *arg)
{
    PyObject *result = PyObject_CallOneArg(function, arg);
    if (result == NULL) {
        return NULL;
    }
    Py_DECREF(result);
    Py_RETURN_NONE;
}

static int
list_int(PyObject *list, Py_ssize_t index, long long *value)
{
    *value = PyLong_AsLongLong(PyList_GET_ITEM(list, index));
    return *value == -1 && PyErr_Occurred() ? -1 : 0;
}

/* The 4 counter indexes of a hash in a table of mask + 1 counters. */
static int
counters_of(Toucher *self, PyObject *key, unsigned char **table, uint64_t index[4],
            uint64_t *h, int *negative)
{
    if (hash_bits(self, key, h, negative) < 0) {
        return -1;
    }
    Py_ssize_t size = PyByteArray_GET_SIZE(self->table);
    if (size < 1 || (size & (size - 1)) != 0) {
        PyErr_SetString(PyExc_ValueError, "the sketch's table must be a power of two long");
        return -1;
    }
    *table = (unsigned char *)PyByteArray_AS_STRING(self->table);
    uint64_t mask = (uint64_t)size - 1;
    uint64_t step = shift_right(*h, *negative, 40) | 1;
    index[0] = *h & mask;
    index[1] = (index[0] + step) & mask;
    index[2] = (index[1] + step) & mask;
    index[3] = (index[2] + step) & mask;
    return 0;
}

/* Count one access in the 4 counters; call count_added() if one rose. */
static int
count_access(Toucher *self, unsigned char *table, const uint64_t index[4])
{
    unsigned char a = table[index[0]], b = table[index[1]], c = table[index[2]],
                  d = table[index[3]];
    if ((a & b & c & d) == 15) {
        return 0;
    }
    for (int n = 0; n < 4; n++) {
        if (table[index[n]] < 15) {
            table[index[n]] += 1;
        }
    }
    /* FrequencySketch.count_added: one more increment; halve once a sample is full. */
    long long size, sample;
    if (list_int(self->counts, 0, &size) < 0 || list_int(self->counts, 1, &sample) < 0) {
        return -1;
    }
    PyObject *next = PyLong_FromLongLong(size + 1);
    if (next == NULL || PyList_SetItem(self->counts, 0, next) < 0) {
        return -1;
    }
    if (size + 1 >= sample) {
        PyObject *done = PyObject_CallNoArgs(self->reset);
        if (done == NULL) {
            return -1;
        }
        Py_DECREF(done);
    }
    return 0;
}

static PyObject *
toucher_increment(PyObject *callable, PyObject *key)
{
    Toucher *self = (Toucher *)callable;
    unsigned char *table;
    uint64_t index[4], h;
    int negative;
    if (counters_of(self, key, &table, index, &h, &negative) < 0
        || count_access(self, table, index) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
toucher_frequency(PyObject *callable, PyObject *key)
{
    Toucher *self = (Toucher *)callable;
    unsigned char *table;
    uint64_t index[4], h;
    int negative;
    if (counters_of(self, key, &table, index, &h, &negative) < 0) {
        return NULL;
    }
    unsigned char low = table[index[0]];
    for (int n = 1; n < 4; n++) {
        if (table[index[n]] < low) {
            low = table[index[n]];
        }
    }
    return PyLong_FromLong(low);
}

static PyMethodDef toucher_methods[] = {
    {"increment", (PyCFunction)toucher_increment, METH_O,
     "increment(key, /)\n--\n\nCount one access of key (FrequencySketch.increment\n"
     "without a doorkeeper)."},
    {"frequency", (PyCFunction)toucher_frequency, METH_O,
     "frequency(key, /)\n--\n\nThe smallest of key's 4 counters\n"
     "(FrequencySketch.frequency without a doorkeeper)."},
    {NULL, NULL, 0, NULL},
};

static PyObject *
toucher_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Toucher *self = (Toucher *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "touch() takes exactly one argument");
        return NULL;
    }
    PyObject *key = args[0];
    unsigned char *table;
    uint64_t index[4], h;
    int negative;
    if (counters_of(self, key, &table, index, &h, &negative) < 0
        || count_access(self, table, index) < 0) {
        return NULL;
    }
    long long hits;
    if (list_int(self->hits, 0, &hits) < 0) {
        return NULL;
    }
    PyObject *next = PyLong_FromLongLong(hits + 1);
    if (next == NULL || PyList_SetItem(self->hits, 0, next) < 0) {
        return NULL;
    }
    long long sample_mask, sample_target;
    if (list_int(self->sampling, 0, &sample_mask) < 0
        || list_int(self->sampling, 1, &sample_target) < 0) {
        return NULL;
    }
    if ((long long)(shift_right(h, negative, 24) & (uint64_t)sample_mask) == sample_target) {
        PyObject *done = PyObject_CallFunctionObjArgs(self->simulate, key, Py_None, NULL);
        if (done == NULL) {
            return NULL;
        }
        Py_DECREF(done);
    }
    int held = PyDict_Contains(self->protected_, key);
    if (held < 0) {
        return NULL;
    }
    if (held) {
        return call_one(self->protected_move, key);
    }
    held = PyDict_Contains(self->window, key);
    if (held < 0) {
        return NULL;
    }
    return call_one(held ? self->window_move : self->promote, key);
}

static int
toucher_traverse(Toucher *self, visitproc visit, void *arg)
{
    Py_VISIT(self->table);
    Py_VISIT(self->hash_fn);
    Py_VISIT(self->counts);
    Py_VISIT(self->reset);
    Py_VISIT(self->protected_);
    Py_VISIT(self->window);
    Py_VISIT(self->protected_move);
    Py_VISIT(self->window_move);
    Py_VISIT(self->promote);
    Py_VISIT(self->simulate);
    Py_VISIT(self->hits);
    Py_VISIT(self->sampling);
    return 0;
}

static int
toucher_clear(Toucher *self)
{
    Py_CLEAR(self->table);
    Py_CLEAR(self->hash_fn);
    Py_CLEAR(self->counts);
    Py_CLEAR(self->reset);
    Py_CLEAR(self->protected_);
    Py_CLEAR(self->window);
    Py_CLEAR(self->protected_move);
    Py_CLEAR(self->window_move);
    Py_CLEAR(self->promote);
    Py_CLEAR(self->simulate);
    Py_CLEAR(self->hits);
    Py_CLEAR(self->sampling);
    return 0;
}

static void
toucher_dealloc(Toucher *self)
{
    PyObject_GC_UnTrack(self);
    toucher_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
toucher_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"table", "hash_fn", "counts", "reset", "protected", "window",
                            "promote", "simulate", "hits", "sampling", NULL};
    PyObject *table, *hash_fn, *counts, *reset, *protected_, *window, *promote, *simulate;
    PyObject *hits, *sampling;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OO!OO!O!OOO!O!:SketchTouch", names,
                                     &PyByteArray_Type, &table, &hash_fn, &PyList_Type,
                                     &counts, &reset, &PyDict_Type, &protected_, &PyDict_Type,
                                     &window, &promote, &simulate, &PyList_Type, &hits,
                                     &PyList_Type, &sampling)) {
        return NULL;
    }
    if (PyList_GET_SIZE(hits) != 1 || PyList_GET_SIZE(sampling) != 2
        || PyList_GET_SIZE(counts) != 2) {
        PyErr_SetString(PyExc_ValueError, "hits holds 1 int, sampling and counts 2");
        return NULL;
    }
    PyObject *protected_move = PyObject_GetAttrString(protected_, "move_to_end");
    if (protected_move == NULL) {
        return NULL;
    }
    PyObject *window_move = PyObject_GetAttrString(window, "move_to_end");
    if (window_move == NULL) {
        Py_DECREF(protected_move);
        return NULL;
    }
    Toucher *self = (Toucher *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(protected_move);
        Py_DECREF(window_move);
        return NULL;
    }
    self->vectorcall = toucher_call;
    self->table = Py_NewRef(table);
    PyObject *builtin_hash = PyDict_GetItemString(PyEval_GetBuiltins(), "hash");
    self->hash_fn = hash_fn == builtin_hash ? NULL : Py_NewRef(hash_fn);
    self->counts = Py_NewRef(counts);
    self->reset = Py_NewRef(reset);
    self->protected_ = Py_NewRef(protected_);
    self->window = Py_NewRef(window);
    self->protected_move = protected_move;
    self->window_move = window_move;
    self->promote = Py_NewRef(promote);
    self->simulate = Py_NewRef(simulate);
    self->hits = Py_NewRef(hits);
    self->sampling = Py_NewRef(sampling);
    return (PyObject *)self;
}

static PyObject *
toucher_vectorcall_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return PyVectorcall_Call(self, args, kwargs);
}

PyDoc_STRVAR(toucher_doc,
"SketchTouch(table, hash_fn, counts, reset, protected, window, promote,\n"
"            simulate, hits, sampling)\n--\n\n"
"W-TinyLFU's hit path, compiled: ``touch(key)`` counts the hit in the sketch's\n"
"``table`` (when a counter rose, ``counts[0] += 1``, and ``reset()`` once it\n"
"reaches ``counts[1]``) and in ``hits[0]``,\n"
"calls ``simulate(key, None)`` when ``(hash >> 24) & sampling[0] ==\n"
"sampling[1]``, and moves the key to the recent end of ``protected`` or\n"
"``window``, else calls ``promote(key)``. See shoal.policy.tinylfu.");

static PyTypeObject ToucherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shoal._speedups.SketchTouch",
    .tp_basicsize = sizeof(Toucher),
    .tp_dealloc = (destructor)toucher_dealloc,
    .tp_vectorcall_offset = offsetof(Toucher, vectorcall),
    .tp_call = toucher_vectorcall_call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = toucher_doc,
    .tp_methods = toucher_methods,
    .tp_traverse = (traverseproc)toucher_traverse,
    .tp_clear = (inquiry)toucher_clear,
    .tp_new = toucher_new,
};

static PyMethodDef speedups_methods[] = {
    {"probe_owner", (PyCFunction)(void (*)(void))probe_owner, METH_FASTCALL, probe_owner_doc},
    {"simple_get", (PyCFunction)(void (*)(void))simple_get, METH_FASTCALL, simple_get_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(speedups_doc,
"Compiled helpers of shoal's ring lookup, HTTP server and W-TinyLFU hit path\n"
"(optional: shoal gives the same answers without them).");

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "shoal._speedups",
    speedups_doc,
    -1,
    speedups_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    init_tables();
    if (PyType_Ready(&ToucherType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "SketchTouch", (PyObject *)&ToucherType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
