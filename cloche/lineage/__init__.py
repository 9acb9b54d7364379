"""Lineage: which pipeline run and step made each model version, endpoint change and batch job,
and what each of them went on to make (see ``context`` for the recording, ``service`` for the
query)."""
