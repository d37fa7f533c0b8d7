"""The operator dashboard: one admin page (/admin/dashboard/) with the queues' depths and the
jobs' throughput over the last hour, the dead letters and their replay by filter, paused
queues, schedules and their last runs, webhook endpoints by health, and the audit log.

It reads every layer (domain, the worker runtime, the schedules), so it sits in the highest
package that may: the scheduler. `views.py` serves the page, `panels.py` gathers what it
shows, `charts.py` draws the charts as inline SVG (no script, no asset from elsewhere),
`forms.py` holds the replay filter, `roles.py` the two roles.
"""
