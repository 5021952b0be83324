"""Generated protobuf and gRPC modules of the OIP V2 service (``grpc_service.proto``).

Do not edit the ``*_pb2*`` files: change the ``.proto`` and run ``scripts/gen_proto.sh``. Their
descriptors live in a private pool (``grpc_service_pb2.POOL``), so this package can be imported
next to ``tritonclient.grpc``, whose messages have the same names.
"""
