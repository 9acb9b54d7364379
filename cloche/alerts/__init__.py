"""Alerts: the rules that open, re-notify and resolve them (lifecycle), the one message a
monitor run sends (digest), and the channels that carry it (channels). Pure logic and I/O
helpers only; the monitoring service owns the database rows.
"""
