# Augmenting declarations for book.py: when the package is built, Cython compiles book.py with
# these types (extension classes with C-level attribute slots, C calls between the hot
# methods). book.py stays plain Python and runs unchanged where it is not compiled.
# Prices and quantities stay Python ints (exact, unbounded); only structure is typed.
import cython


@cython.no_gc
cdef class _Order:
    cdef public object id, user, side, price, qty, leaves, filled, cmd, tier, stop_key, stop_no
    cdef public object key
    cdef public bint constrained, market, triggered, day


@cython.locals(o=_Order)
cdef _Order _new_order(id, user, side, price, qty, cmd, bint constrained, tier)


@cython.no_gc
cdef class _Level:
    cdef public object price, key, size, orders
    cdef public Py_ssize_t live


cdef class _Side:
    cdef public object side
    cdef public long sign
    cdef public dict levels
    cdef public list heap
    cdef public set inheap

    @cython.locals(k=object)
    cpdef object best_key(self)


cdef class OrderBook:
    cdef public object spec, symbol
    cdef public long long _seq
    cdef public object _next_id, _stop_no
    cdef public dict _orders, _pending
    cdef public _Side _bids, _asks
    cdef public object _last, _ref
    cdef public bint _halted, _tiered
    cdef public list _out, _expiries
    cdef public object _next_expiry
    cdef public dict _rising, _falling, _handlers
    cdef public object _min_lots, _max_lots, _min_notional
    cdef public object _maker_bps, _taker_bps, _protect_bps, _tier_size

    @cython.locals(o=_Order, opp=_Side, k=object)
    cdef _submit(self, c)

    @cython.locals(opp=_Side, sign=long)
    cdef _execute(self, _Order o, ts)

    @cython.locals(own=_Side, lvl=_Level, levels=dict, key=object)
    cdef _rest(self, _Order o, ts)

    @cython.locals(own=_Side, lvl=_Level)
    cdef _remove_resting(self, _Order o, ts)

    @cython.locals(levels=dict, heap=list, lvl=_Level)
    cdef _match(self, _Order o, _Side opp, limit_key, ts)

    @cython.locals(m=_Order, i=Py_ssize_t, out=list, orders=dict, tc=bint)
    cdef _match_level(self, _Order o, _Level lvl, maker_side, ts)

    @cython.locals(o=_Order)
    cdef _cancel(self, c)

    cdef _cancel_one(self, _Order o, bint pending, reason, ts)

    cdef _emit_cancel(self, ts, _Order o, reason, qty, leaves)
