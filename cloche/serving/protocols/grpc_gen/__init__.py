"""Stubs generated from ``grpc_predict_v2.proto`` by ``scripts/gen_grpc.sh``; do not edit.

The messages live in a private descriptor pool, not protobuf's default one: tritonclient,
KServe and MLServer register the same ``inference.*`` names there, and a process that imports
one of them beside cloche would otherwise fail with "duplicate symbol".
"""
