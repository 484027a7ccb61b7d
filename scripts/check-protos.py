#!/usr/bin/python3
"""Check latch's .proto files against etcd 3.4's wire contract.

latch speaks the etcd v3 gRPC API, but its api/proto files are its own
declarations, not copies of etcd's. They only stay wire-compatible if every
package, message, field number, type, label, oneof, enum value, service and
method matches etcd's. This script compiles both sets with protoc into
FileDescriptorSets and compares them structurally (comments, options and
gogoproto/google.api annotations are ignored).

The reference files come from Debian's golang-etcd-server-dev package.
Requires python3-protobuf and protobuf-compiler (protoc).

Exit status: 0 no differences, 1 differences found, 2 setup error.
"""

import os
import shutil
import subprocess
import sys
import tempfile

try:
    from google.protobuf import descriptor_pb2
except ImportError:
    print("check-protos: google.protobuf not found; install python3-protobuf "
          "and run with /usr/bin/python3", file=sys.stderr)
    sys.exit(2)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS_ROOT = os.path.join(REPO, "api", "proto")
GOSRC = "/usr/share/gocode/src"
REF_ROOT = os.path.join(GOSRC, "go.etcd.io")
REF_INCLUDES = [
    REF_ROOT,  # etcd's own imports are written "etcd/..."
    os.path.join(GOSRC, "github.com/gogo/protobuf"),
    os.path.join(GOSRC, "github.com/grpc-ecosystem/grpc-gateway/third_party/googleapis"),
]
# package -> (etcd file relative to REF_ROOT, our file relative to OURS_ROOT)
PACKAGES = {
    "etcdserverpb": ("etcd/etcdserver/etcdserverpb/rpc.proto", "etcdserverpb/rpc.proto"),
    "mvccpb": ("etcd/mvcc/mvccpb/kv.proto", "mvccpb/kv.proto"),
    "authpb": ("etcd/auth/authpb/auth.proto", "authpb/auth.proto"),
    "v3lockpb": ("etcd/etcdserver/api/v3lock/v3lockpb/v3lock.proto", "v3lockpb/v3lock.proto"),
    "v3electionpb": ("etcd/etcdserver/api/v3election/v3electionpb/v3election.proto",
                     "v3electionpb/v3election.proto"),
}

FDP = descriptor_pb2.FieldDescriptorProto
TYPE_NAMES = {v: k[len("TYPE_"):].lower() for k, v in FDP.Type.items()}
LABEL_NAMES = {v: k[len("LABEL_"):].lower() for k, v in FDP.Label.items()}


def build_set(includes, files, out):
    """Run protoc and return {package: [FileDescriptorProto]}."""
    cmd = ["protoc", "--include_imports", "--descriptor_set_out=" + out]
    cmd += ["-I" + d for d in includes] + files
    # Run from the (empty) temp dir so relative names resolve only via -I.
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(out))
    if res.returncode != 0:
        print("check-protos: protoc failed: %s\n%s" % (" ".join(cmd), res.stderr),
              file=sys.stderr)
        sys.exit(2)
    fds = descriptor_pb2.FileDescriptorSet()
    with open(out, "rb") as f:
        fds.ParseFromString(f.read())
    by_pkg = {}
    for fd in fds.file:
        by_pkg.setdefault(fd.package, []).append(fd)
    return by_pkg


def last(type_name):
    return type_name.rsplit(".", 1)[-1] if type_name else "-"


def field_sig(msg, fld):
    oneof = "-"
    if fld.HasField("oneof_index") and not fld.proto3_optional:
        oneof = msg.oneof_decl[fld.oneof_index].name
    return {"number": fld.number, "type": TYPE_NAMES[fld.type],
            "type_name": last(fld.type_name), "label": LABEL_NAMES[fld.label],
            "oneof": oneof}


class Checker:
    def __init__(self):
        self.diffs = []
        self.counts = {"messages": 0, "fields": 0, "enums": 0, "methods": 0}

    def diff(self, path, ours, etcd):
        self.diffs.append("%s: ours %s, etcd %s" % (path, ours, etcd))

    def pair(self, path, ours, etcd, kind):
        """Match named items; report one-sided ones, return common pairs."""
        o = {x.name: x for x in ours}
        e = {x.name: x for x in etcd}
        for name in sorted(set(o) | set(e)):
            if name not in o:
                self.diff("%s.%s" % (path, name), "missing", "has " + kind)
            elif name not in e:
                self.diff("%s.%s" % (path, name), "has " + kind, "missing")
        return [(n, o[n], e[n]) for n in sorted(set(o) & set(e))]

    def enums(self, path, ours, etcd):
        for name, oe, ee in self.pair(path, ours, etcd, "enum"):
            self.counts["enums"] += 1
            epath = "%s.%s" % (path, name)
            for vname, ov, ev in self.pair(epath, oe.value, ee.value, "enum value"):
                if ov.number != ev.number:
                    self.diff("%s.%s" % (epath, vname), "= %d" % ov.number, "= %d" % ev.number)

    def messages(self, path, ours, etcd):
        for name, om, em in self.pair(path, ours, etcd, "message"):
            self.counts["messages"] += 1
            mpath = "%s.%s" % (path, name)
            for fname, of, ef in self.pair(mpath, om.field, em.field, "field"):
                self.counts["fields"] += 1
                osig, esig = field_sig(om, of), field_sig(em, ef)
                for key in osig:
                    if osig[key] != esig[key]:
                        self.diff("%s.%s" % (mpath, fname), "%s %s" % (key, osig[key]),
                                  "%s %s" % (key, esig[key]))
            self.messages(mpath, om.nested_type, em.nested_type)
            self.enums(mpath, om.enum_type, em.enum_type)

    def services(self, path, ours, etcd):
        for name, osv, esv in self.pair(path, ours, etcd, "service"):
            spath = "%s.%s" % (path, name)
            for mname, om, em in self.pair(spath, osv.method, esv.method, "method"):
                self.counts["methods"] += 1
                for key, fn in (("input", lambda m: last(m.input_type)),
                                ("output", lambda m: last(m.output_type)),
                                ("client_streaming", lambda m: m.client_streaming),
                                ("server_streaming", lambda m: m.server_streaming)):
                    if fn(om) != fn(em):
                        self.diff("%s.%s" % (spath, mname), "%s %s" % (key, fn(om)),
                                  "%s %s" % (key, fn(em)))

    def package(self, pkg, ours, etcd):
        def gather(files, attr):
            return [x for fd in files for x in getattr(fd, attr)]
        self.messages(pkg, gather(ours, "message_type"), gather(etcd, "message_type"))
        self.enums(pkg, gather(ours, "enum_type"), gather(etcd, "enum_type"))
        self.services(pkg, gather(ours, "service"), gather(etcd, "service"))


def main():
    if not os.path.isdir(os.path.join(REF_ROOT, "etcd")):
        print("check-protos: etcd reference protos not found under %s; install the "
              "Debian package golang-etcd-server-dev" % REF_ROOT, file=sys.stderr)
        return 2
    if shutil.which("protoc") is None:
        print("check-protos: protoc not found; install protobuf-compiler", file=sys.stderr)
        return 2
    missing = [rel for _, rel in PACKAGES.values()
               if not os.path.isfile(os.path.join(OURS_ROOT, rel))]
    if missing:
        print("check-protos: missing in %s: %s" % (OURS_ROOT, ", ".join(missing)),
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        etcd = build_set(REF_INCLUDES, [r for r, _ in PACKAGES.values()],
                         os.path.join(tmp, "etcd.pb"))
        ours = build_set([OURS_ROOT], [o for _, o in PACKAGES.values()],
                         os.path.join(tmp, "ours.pb"))
    checker = Checker()
    for pkg in PACKAGES:
        checker.package(pkg, ours.get(pkg, []), etcd.get(pkg, []))
    for line in checker.diffs:
        print(line)
    if checker.diffs:
        print("check-protos: %d difference(s) from etcd 3.4" % len(checker.diffs),
              file=sys.stderr)
        return 1
    print("check-protos: OK, matches etcd 3.4 (%s compared)" %
          ", ".join("%d %s" % (n, k) for k, n in checker.counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
