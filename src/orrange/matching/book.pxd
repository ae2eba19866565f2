# Augmenting declarations for book.py: when the package is built, Cython compiles book.py with
# these types (extension classes with C-level attribute slots, C calls between the hot
# methods). book.py stays plain Python and runs unchanged where it is not compiled.
# Prices and quantities stay Python ints (exact, unbounded); only structure is typed.
import cython

# ------------------------------------------------------------------------------------------
# msgspec structs at C level. A msgspec Struct keeps its fields as object slots of the
# instance, each class level's fields in name order, after those of its bases. The structs
# below spell that layout for the command and event types on the hot path, so that
# `c.ts` on a typed command is one load and an event is allocated and filled directly
# (what msgspec's own constructor does, without parsing the arguments). `orr_check_layouts`
# compares every declared field with msgspec's member descriptor at import and refuses to
# import on any difference (a msgspec that lays structs out otherwise, or a changed command or
# event type: then update the structs here); the pure-Python module still works.
cdef extern from *:
    """
    #include <structmember.h>
    typedef struct {
        PyObject_HEAD
        PyObject *client_order_id, *expire_at, *max_slippage_bps, *min_reputation, *order_id,
            *order_type, *payment_methods, *post_only, *price, *quantity, *reputation, *side,
            *stp, *tif, *trigger_price, *trigger_source, *ts, *user;
    } orr_SubmitOrder;
    typedef struct { PyObject_HEAD PyObject *order_id, *ts, *user; } orr_CancelOrder;
    #define ORR_EVENT_HEAD PyObject_HEAD PyObject *seq, *symbol, *ts;
    typedef struct {
        ORR_EVENT_HEAD
        PyObject *client_order_id, *order_id, *order_type, *pending, *price, *quantity, *side,
            *tif, *trigger_price, *user;
    } orr_OrderAccepted;
    typedef struct {
        ORR_EVENT_HEAD
        PyObject *aggressor, *maker_fee, *maker_leaves, *maker_order_id, *maker_user,
            *payment_methods, *price, *quantity, *taker_fee, *taker_leaves, *taker_order_id,
            *taker_user;
    } orr_OrderFilled;
    typedef struct {
        ORR_EVENT_HEAD PyObject *canceled_qty, *leaves, *order_id, *reason, *user;
    } orr_OrderCanceled;
    typedef struct { ORR_EVENT_HEAD PyObject *price, *side, *size; } orr_BookDelta;

    typedef struct { const char *name; Py_ssize_t offset; } orr_field;
    #define ORR_F(T, f) {#f, offsetof(T, f)}
    #define ORR_EVF(T) ORR_F(T, seq), ORR_F(T, symbol), ORR_F(T, ts)
    static const orr_field orr_submit_fields[] = {
        ORR_F(orr_SubmitOrder, client_order_id), ORR_F(orr_SubmitOrder, expire_at),
        ORR_F(orr_SubmitOrder, max_slippage_bps), ORR_F(orr_SubmitOrder, min_reputation),
        ORR_F(orr_SubmitOrder, order_id), ORR_F(orr_SubmitOrder, order_type),
        ORR_F(orr_SubmitOrder, payment_methods), ORR_F(orr_SubmitOrder, post_only),
        ORR_F(orr_SubmitOrder, price), ORR_F(orr_SubmitOrder, quantity),
        ORR_F(orr_SubmitOrder, reputation), ORR_F(orr_SubmitOrder, side),
        ORR_F(orr_SubmitOrder, stp), ORR_F(orr_SubmitOrder, tif),
        ORR_F(orr_SubmitOrder, trigger_price), ORR_F(orr_SubmitOrder, trigger_source),
        ORR_F(orr_SubmitOrder, ts), ORR_F(orr_SubmitOrder, user), {NULL, 0}};
    static const orr_field orr_cancel_fields[] = {
        ORR_F(orr_CancelOrder, order_id), ORR_F(orr_CancelOrder, ts),
        ORR_F(orr_CancelOrder, user), {NULL, 0}};
    static const orr_field orr_accepted_fields[] = {
        ORR_EVF(orr_OrderAccepted), ORR_F(orr_OrderAccepted, client_order_id),
        ORR_F(orr_OrderAccepted, order_id), ORR_F(orr_OrderAccepted, order_type),
        ORR_F(orr_OrderAccepted, pending), ORR_F(orr_OrderAccepted, price),
        ORR_F(orr_OrderAccepted, quantity), ORR_F(orr_OrderAccepted, side),
        ORR_F(orr_OrderAccepted, tif), ORR_F(orr_OrderAccepted, trigger_price),
        ORR_F(orr_OrderAccepted, user), {NULL, 0}};
    static const orr_field orr_filled_fields[] = {
        ORR_EVF(orr_OrderFilled), ORR_F(orr_OrderFilled, aggressor),
        ORR_F(orr_OrderFilled, maker_fee), ORR_F(orr_OrderFilled, maker_leaves),
        ORR_F(orr_OrderFilled, maker_order_id), ORR_F(orr_OrderFilled, maker_user),
        ORR_F(orr_OrderFilled, payment_methods), ORR_F(orr_OrderFilled, price),
        ORR_F(orr_OrderFilled, quantity), ORR_F(orr_OrderFilled, taker_fee),
        ORR_F(orr_OrderFilled, taker_leaves), ORR_F(orr_OrderFilled, taker_order_id),
        ORR_F(orr_OrderFilled, taker_user), {NULL, 0}};
    static const orr_field orr_canceled_fields[] = {
        ORR_EVF(orr_OrderCanceled), ORR_F(orr_OrderCanceled, canceled_qty),
        ORR_F(orr_OrderCanceled, leaves), ORR_F(orr_OrderCanceled, order_id),
        ORR_F(orr_OrderCanceled, reason), ORR_F(orr_OrderCanceled, user), {NULL, 0}};
    static const orr_field orr_delta_fields[] = {
        ORR_EVF(orr_BookDelta), ORR_F(orr_BookDelta, price), ORR_F(orr_BookDelta, side),
        ORR_F(orr_BookDelta, size), {NULL, 0}};

    static PyTypeObject *orr_t_accepted, *orr_t_filled, *orr_t_canceled, *orr_t_delta;

    /* 0 and an ImportError unless `cls` is a non-GC msgspec struct whose __struct_fields__
       are exactly `fields` (in any order), each an object slot at the declared offset. */
    static int orr_check_one(PyObject *cls, const orr_field *fields, Py_ssize_t size) {
        PyTypeObject *t = (PyTypeObject *)cls;
        PyObject *declared = NULL, *name = NULL, *d;
        Py_ssize_t n = 0;
        int ok = PyType_Check(cls) && !(t->tp_flags & Py_TPFLAGS_HAVE_GC)
                 && t->tp_basicsize == size && t->tp_itemsize == 0;
        if (ok) {
            declared = PyObject_GetAttrString(cls, "__struct_fields__");
            if (declared == NULL) return 0;
            ok = PyTuple_Check(declared);
        }
        for (; ok && fields[n].name != NULL; n++) {
            name = PyUnicode_InternFromString(fields[n].name);
            if (name == NULL) { Py_XDECREF(declared); return 0; }
            d = _PyType_Lookup(t, name);
            ok = PySequence_Contains(declared, name) == 1 && d != NULL
                 && Py_IS_TYPE(d, &PyMemberDescr_Type)
                 && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX
                 && ((PyMemberDescrObject *)d)->d_member->offset == fields[n].offset;
            Py_DECREF(name);
        }
        ok = ok && PyTuple_GET_SIZE(declared) == n;
        Py_XDECREF(declared);
        if (!ok && !PyErr_Occurred())
            PyErr_Format(PyExc_ImportError,
                         "msgspec lays out %R otherwise than book.pxd declares: delete the "
                         "compiled orrange.matching.book to run the pure-Python core (or "
                         "install with ORRANGE_PURE_PYTHON=1)", cls);
        return ok;
    }

    static int orr_check_layouts(PyObject *sub, PyObject *cancel, PyObject *accepted,
                                 PyObject *filled, PyObject *canceled, PyObject *delta) {
        if (!orr_check_one(sub, orr_submit_fields, sizeof(orr_SubmitOrder))
            || !orr_check_one(cancel, orr_cancel_fields, sizeof(orr_CancelOrder))
            || !orr_check_one(accepted, orr_accepted_fields, sizeof(orr_OrderAccepted))
            || !orr_check_one(filled, orr_filled_fields, sizeof(orr_OrderFilled))
            || !orr_check_one(canceled, orr_canceled_fields, sizeof(orr_OrderCanceled))
            || !orr_check_one(delta, orr_delta_fields, sizeof(orr_BookDelta)))
            return -1;
        Py_INCREF(accepted); orr_t_accepted = (PyTypeObject *)accepted;
        Py_INCREF(filled); orr_t_filled = (PyTypeObject *)filled;
        Py_INCREF(canceled); orr_t_canceled = (PyTypeObject *)canceled;
        Py_INCREF(delta); orr_t_delta = (PyTypeObject *)delta;
        return 1;
    }

    #define ORR_SET(f) Py_INCREF(f); e->f = f
    /* what msgspec's constructor does for a non-GC struct, less the zeroing: every field is
       set below (and the struct has no other slot: checked above) */
    #define ORR_NEW(T, t) T *e = (T *)PyObject_Malloc(sizeof(T)); \
        if (e == NULL) return PyErr_NoMemory(); \
        PyObject_Init((PyObject *)e, (t)); ORR_SET(symbol); ORR_SET(seq); ORR_SET(ts)

    static PyObject *orr_ev_accepted(PyObject *symbol, PyObject *seq, PyObject *ts,
            PyObject *order_id, PyObject *user, PyObject *client_order_id, PyObject *side,
            PyObject *order_type, PyObject *tif, PyObject *price, PyObject *trigger_price,
            PyObject *quantity, PyObject *pending) {
        ORR_NEW(orr_OrderAccepted, orr_t_accepted);
        ORR_SET(order_id); ORR_SET(user); ORR_SET(client_order_id); ORR_SET(side);
        ORR_SET(order_type); ORR_SET(tif); ORR_SET(price); ORR_SET(trigger_price);
        ORR_SET(quantity); ORR_SET(pending);
        return (PyObject *)e;
    }
    static PyObject *orr_ev_filled(PyObject *symbol, PyObject *seq, PyObject *ts,
            PyObject *maker_order_id, PyObject *taker_order_id, PyObject *maker_user,
            PyObject *taker_user, PyObject *price, PyObject *quantity, PyObject *aggressor,
            PyObject *maker_fee, PyObject *taker_fee, PyObject *maker_leaves,
            PyObject *taker_leaves, PyObject *payment_methods) {
        ORR_NEW(orr_OrderFilled, orr_t_filled);
        ORR_SET(maker_order_id); ORR_SET(taker_order_id); ORR_SET(maker_user);
        ORR_SET(taker_user); ORR_SET(price); ORR_SET(quantity); ORR_SET(aggressor);
        ORR_SET(maker_fee); ORR_SET(taker_fee); ORR_SET(maker_leaves); ORR_SET(taker_leaves);
        ORR_SET(payment_methods);
        return (PyObject *)e;
    }
    static PyObject *orr_ev_canceled(PyObject *symbol, PyObject *seq, PyObject *ts,
            PyObject *order_id, PyObject *user, PyObject *reason, PyObject *canceled_qty,
            PyObject *leaves) {
        ORR_NEW(orr_OrderCanceled, orr_t_canceled);
        ORR_SET(order_id); ORR_SET(user); ORR_SET(reason); ORR_SET(canceled_qty);
        ORR_SET(leaves);
        return (PyObject *)e;
    }
    static PyObject *orr_ev_delta(PyObject *symbol, PyObject *seq, PyObject *ts,
            PyObject *side, PyObject *price, PyObject *size) {
        ORR_NEW(orr_BookDelta, orr_t_delta);
        ORR_SET(side); ORR_SET(price); ORR_SET(size);
        return (PyObject *)e;
    }
    """
    ctypedef class orrange.matching.commands.SubmitOrder [object orr_SubmitOrder, check_size ignore]:
        cdef readonly object client_order_id, expire_at, max_slippage_bps, min_reputation
        cdef readonly object order_id, order_type, payment_methods, post_only, price, quantity
        cdef readonly object reputation, side, stp, tif, trigger_price, trigger_source, ts, user

    ctypedef class orrange.matching.commands.CancelOrder [object orr_CancelOrder, check_size ignore]:
        cdef readonly object order_id, ts, user

    int _check_layouts "orr_check_layouts"(
        object, object, object, object, object, object) except -1
    object _ev_accepted "orr_ev_accepted"(
        object symbol, object seq, object ts, object order_id, object user,
        object client_order_id, object side, object order_type, object tif, object price,
        object trigger_price, object quantity, object pending)
    object _ev_filled "orr_ev_filled"(
        object symbol, object seq, object ts, object maker_order_id, object taker_order_id,
        object maker_user, object taker_user, object price, object quantity, object aggressor,
        object maker_fee, object taker_fee, object maker_leaves, object taker_leaves,
        object payment_methods)
    object _ev_canceled "orr_ev_canceled"(
        object symbol, object seq, object ts, object order_id, object user, object reason,
        object canceled_qty, object leaves)
    object _ev_delta "orr_ev_delta"(
        object symbol, object seq, object ts, object side, object price, object size)


@cython.no_gc
cdef class _Order:
    cdef public object id, user, side, price, qty, leaves, filled, tier, stop_key, stop_no
    cdef public SubmitOrder cmd
    cdef public object key
    cdef public bint constrained, market, triggered, day


@cython.locals(o=_Order)
cdef _Order _new_order(id, user, side, price, qty, SubmitOrder cmd, bint constrained, tier)


cdef bint _compatible(_Order a, _Order b) except -1


@cython.no_gc
cdef class _Level:
    cdef public object price, key, size
    cdef public list orders
    cdef public Py_ssize_t live, head


cdef class _Side:
    cdef public object side
    cdef public long sign
    cdef public dict levels
    cdef public list heap
    cdef public set inheap
    cdef public object best

    @cython.locals(k=object)
    cdef object best_key(self)


cdef class OrderBook:
    cdef public object spec, symbol
    cdef public long long _seq
    cdef public object _next_id, _stop_no
    cdef public dict _orders, _pending
    cdef public _Side _bids, _asks
    cdef public object _last, _ref
    cdef public bint _halted, _tiered, _need_notional
    cdef public list _out, _expiries
    cdef public object _next_expiry
    cdef public dict _rising, _falling, _handlers
    cdef public object _min_lots, _max_lots, _min_notional
    cdef public object _maker_bps, _taker_bps, _protect_bps, _tier_size

    @cython.locals(o=_Order, opp=_Side, k=object)
    cdef _submit(self, SubmitOrder c)

    @cython.locals(opp=_Side, sign=long)
    cdef _execute(self, _Order o, ts)

    @cython.locals(own=_Side, lvl=_Level, levels=dict, key=object, q=list, i=Py_ssize_t)
    cdef _rest(self, _Order o, ts)

    @cython.locals(own=_Side, lvl=_Level, x=_Order)
    cdef _remove_resting(self, _Order o, ts)

    @cython.locals(levels=dict, heap=list, lvl=_Level)
    cdef _match(self, _Order o, _Side opp, limit_key, ts)

    @cython.locals(m=_Order, i=Py_ssize_t, head=Py_ssize_t, q=list, out=list, orders=dict, tc=bint,
                   mpos=bint, tpos=bint)
    cdef _match_level(self, _Order o, _Level lvl, maker_side, ts)

    @cython.locals(o=_Order)
    cdef _cancel(self, CancelOrder c)

    cdef _cancel_one(self, _Order o, bint pending, reason, ts)

    cdef _emit_cancel(self, ts, _Order o, reason, qty, leaves)
