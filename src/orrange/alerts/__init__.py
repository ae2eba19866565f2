"""Alerts: price alert rules, the sorted threshold index and market signals (pure core).

* :mod:`orrange.alerts.rules`: :class:`PriceAlert`, conditions, request conversion, events.
* :mod:`orrange.alerts.index`: :class:`AlertIndex`, evaluation without scanning.
* :mod:`orrange.alerts.signals`: market signals from closed candles, signal subscriptions.
"""
