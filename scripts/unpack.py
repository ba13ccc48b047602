#!/usr/bin/env python3
"""Unpack a pack of small objects without org-backup: Python 3's standard library only.

    aws s3api get-object --bucket BACKUP_BUCKET --key data/~packs/... --version-id VERSION pack.bin

The pack version a manifest names may have been repacked by a prune: look for its relocation record first,
meta/relocations/<the pack's key after data/~packs/>/<VERSION>.json, which names the pack version that holds
the objects now (new_key, new_version) and each object's offset there.
    python3 unpack.py pack.bin restored/          # every object, as restored/<source>/<key>
    python3 unpack.py pack.bin --list             # what the pack holds

The format (docs: "The pack format"): the objects' bytes one after another, a gzip JSON Lines trailer (a
header, then per object source, key, offset, length, sha256, identity), and a 48-byte footer: b"OBPACK01",
the trailer's length (8 bytes, big-endian), the trailer's SHA-256 (32 bytes). Every object's bytes are
checked against its SHA-256; a key that would land outside the folder is refused.
"""

import argparse
import gzip
import hashlib
import json
import os
import struct
import sys


def index(pack):
    size = pack.seek(0, os.SEEK_END)
    pack.seek(size - 48)
    magic, length, digest = struct.unpack(">8sQ32s", pack.read(48))
    if magic != b"OBPACK01":
        sys.exit("not a pack (no OBPACK01 footer)")
    pack.seek(size - 48 - length)
    trailer = pack.read(length)
    if hashlib.sha256(trailer).digest() != digest:
        sys.exit("the trailer does not hash to what the footer says: the pack is damaged")
    lines = gzip.decompress(trailer).decode("utf-8").splitlines()
    return [json.loads(line) for line in lines[1:]]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pack")
    parser.add_argument("folder", nargs="?")
    parser.add_argument("--list", action="store_true", help="list the objects instead of writing them")
    args = parser.parse_args()
    with open(args.pack, "rb") as pack:
        for item in index(pack):
            if args.list or not args.folder:
                print(f"{item['length']:>12} {item['sha256'][:12]} {item['source']}/{item['key']}")
                continue
            root = os.path.realpath(args.folder)
            path = os.path.realpath(os.path.join(root, item["source"], item["key"]))
            if not path.startswith(root + os.sep):
                print(f"refused (outside {args.folder}): {item['source']}/{item['key']}", file=sys.stderr)
                continue
            if item["key"].endswith("/"):
                os.makedirs(path, exist_ok=True)  # a folder marker: the folder is its content
                continue
            pack.seek(item["offset"])
            data = pack.read(item["length"])
            if hashlib.sha256(data).hexdigest() != item["sha256"]:
                sys.exit(f"{item['source']}/{item['key']}: its bytes do not hash to its SHA-256: the pack is damaged")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as out:
                out.write(data)


if __name__ == "__main__":
    main()
