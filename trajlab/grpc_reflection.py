"""Server reflection under both protocol names: ``grpc.reflection.v1`` and ``v1alpha``.

grpcio-reflection (1.85) ships only ``grpc.reflection.v1alpha``; ``buf curl
--reflect-protocol grpc-v1`` and newer grpcurl ask for ``grpc.reflection.v1``. The
two protocols are the same messages under another package name (same field numbers,
so the same bytes on the wire), so one servicer answers both: the v1 method is
registered with v1alpha's (de)serializers, and a v1 copy of the reflection file is
added to the descriptor pool so ``file_containing_symbol`` finds the v1 service too.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
V1ALPHA_SERVICE_NAME = reflection.SERVICE_NAME
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    """Put a v1 copy of the v1alpha reflection file into ``pool`` (once)."""
    try:
        pool.FindFileByName(_V1_FILE)
        return
    except KeyError:
        pass
    fdp = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(fdp)
    fdp.name = _V1_FILE
    fdp.package = "grpc.reflection.v1"
    for msg in fdp.message_type:
        for fld in msg.field:
            if fld.type_name.startswith(".grpc.reflection.v1alpha."):
                fld.type_name = fld.type_name.replace(".v1alpha.", ".v1.", 1)
    for svc in fdp.service:
        for m in svc.method:
            m.input_type = m.input_type.replace(".v1alpha.", ".v1.", 1)
            m.output_type = m.output_type.replace(".v1alpha.", ".v1.", 1)
    pool.Add(fdp)


def enable_reflection(service_names: Iterable[str], server: grpc.Server) -> None:
    """Serve reflection for ``service_names`` (plus both reflection services) on ``server``."""
    pool = descriptor_pool.Default()
    _add_v1_descriptor(pool)
    names = [*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME]
    servicer = reflection.ReflectionServicer(names, pool=pool)
    for service in (V1ALPHA_SERVICE_NAME, V1_SERVICE_NAME):
        handler = grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, {"ServerReflectionInfo": handler}),)
        )
