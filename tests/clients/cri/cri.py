#!/usr/bin/python3
"""One CRI call (runtime.v1) to containerd's CRI plugin, for runvm's tests.

    cri.py --socket SOCK --stubs DIR METHOD [REQUEST_JSON]

REQUEST_JSON is the request message in protobuf's JSON mapping (field names as in cri.proto).
Prints the response as one JSON object, every field present (defaults included) and bytes
fields (ExecSync's stdout/stderr) as UTF-8 text rather than base64. A gRPC error goes to
stderr as "grpc error: CODE: DETAILS" with exit status 2.

DIR holds cri_pb2.py, which tests/clients/setup.sh generates from cri.proto with protoc:
no code generated for gRPC itself is needed, because the calls go through grpc's generic
unary-unary API with the message classes as (de)serializers.
"""

import argparse
import json
import sys


def parse_args():
    parser = argparse.ArgumentParser(description="call one CRI runtime.v1 method")
    parser.add_argument("--socket", required=True, help="containerd's gRPC unix socket")
    parser.add_argument("--stubs", required=True, help="directory holding cri_pb2.py")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per call")
    parser.add_argument("method", help="e.g. RunPodSandbox, ExecSync")
    parser.add_argument("request", nargs="?", default="{}", help="request as JSON")
    return parser.parse_args()


def find_method(pb2, name):
    """The service that declares NAME and the method's descriptor."""
    for service in pb2.DESCRIPTOR.services_by_name.values():
        method = service.methods_by_name.get(name)
        if method is not None:
            return service, method
    known = sorted(
        m for s in pb2.DESCRIPTOR.services_by_name.values() for m in s.methods_by_name
    )
    raise SystemExit(f"cri.py: unknown method {name!r} (cri.proto declares {', '.join(known)})")


def to_json(message, json_format, descriptor):
    body = json_format.MessageToDict(
        message, preserving_proto_field_name=True, including_default_value_fields=True
    )
    # ExecSync's output is what tests compare: text reads better than base64.
    for field in message.DESCRIPTOR.fields:
        if field.type == descriptor.FieldDescriptor.TYPE_BYTES and field.label != field.LABEL_REPEATED:
            body[field.name] = getattr(message, field.name).decode("utf-8", "replace")
    return json.dumps(body, sort_keys=True)


def main():
    args = parse_args()
    sys.path.insert(0, args.stubs)
    try:
        import grpc
        from google.protobuf import descriptor, json_format
        import cri_pb2
    except ImportError as err:
        print(f"cri.py: {err} (needs python3-grpcio, python3-protobuf and {args.stubs}/cri_pb2.py)",
              file=sys.stderr)
        return 3

    service, method = find_method(cri_pb2, args.method)
    # cri.proto declares every message at the top level of its package.
    request_class = getattr(cri_pb2, method.input_type.name)
    response_class = getattr(cri_pb2, method.output_type.name)
    try:
        request = json_format.Parse(args.request, request_class())
    except json_format.ParseError as err:
        print(f"cri.py: request for {args.method} does not fit {method.input_type.full_name}: {err}",
              file=sys.stderr)
        return 3

    with grpc.insecure_channel(f"unix://{args.socket}") as channel:
        call = channel.unary_unary(
            f"/{service.full_name}/{method.name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        try:
            response = call(request, timeout=args.timeout)
        except grpc.RpcError as err:
            print(f"grpc error: {err.code().name}: {err.details()}", file=sys.stderr)
            return 2
    print(to_json(response, json_format, descriptor))
    return 0


if __name__ == "__main__":
    sys.exit(main())
