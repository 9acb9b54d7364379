"""Batch prediction: stream a dataset through a registered model into partitioned output files.

``spec`` holds the plain data shared by the engines and the job service; ``service`` is the one
place jobs are created, run, listed, cancelled and resumed.
"""
