#!/usr/bin/env python3
"""Tokenise text with a tiktoken BPE into a "superlinear-tokens" HDF5 file.

Writes the format documented in data/token_dataset.h (the reference), which the trainer reads
with `data: {source: hdf5, path: OUT.h5}`; `superlinear data info OUT.h5` checks a file. Each
document is encoded with encode_ordinary (special-token text in the input is plain text) and
followed by the encoding's end-of-text token when it has one, so a model can learn where a
document ends. Like `superlinear data build`, directories are walked recursively in sorted order,
hidden entries are skipped, and empty documents are dropped. The file is written under a
temporary name and renamed when complete.

    pip install h5py tiktoken numpy
    python3 scripts/tiktoken_to_hdf5.py --encoding gpt2 --output gpt2.h5 corpus/
    python3 scripts/tiktoken_to_hdf5.py --doc-per-line --output lines.h5 a.txt b.txt
"""
import argparse
import os
import sys

FORMAT = "superlinear-tokens"
VERSION = 1
CHUNK = 1 << 16


def input_files(inputs, output):
    out = os.path.abspath(output)
    files = []
    for path in inputs:
        if not os.path.exists(path):
            sys.exit(f"{path}: no such file or directory")
        if not os.path.isdir(path):
            files.append(path)
            continue
        found = []
        for root, dirs, names in os.walk(path, followlinks=True):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for n in names:
                p = os.path.join(root, n)
                a = os.path.abspath(p)
                if n.startswith(".") or a == out or a.startswith(out + ".tmp."):
                    continue
                if os.path.isfile(p):
                    found.append(p)
        files.extend(sorted(found))
    if not files:
        sys.exit("no input files found")
    return files


def documents(files, mode, separator):
    for f in files:
        with open(f, "rb") as fh:
            data = fh.read()
        text = data.decode("utf-8", errors="replace")
        if mode == "line":
            pieces = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
        elif mode == "separator":
            pieces = text.split(separator)
        else:
            pieces = [text]
        for p in pieces:
            if p:
                yield p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+", help="text files or directories")
    ap.add_argument("--output", "-o", required=True, help="the .h5 file to write")
    ap.add_argument("--encoding", default="gpt2",
                    help="tiktoken encoding name (gpt2, r50k_base, cl100k_base, o200k_base, ...)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--doc-per-file", dest="mode", action="store_const", const="file",
                      help="one document per file (default)")
    mode.add_argument("--doc-per-line", dest="mode", action="store_const", const="line",
                      help="one document per line")
    mode.add_argument("--separator", help="documents are the pieces between occurrences of TEXT")
    ap.add_argument("--no-eot", action="store_true",
                    help="do not append the end-of-text token to each document")
    args = ap.parse_args()
    if args.separator is not None:
        if not args.separator:
            ap.error("--separator needs a non-empty TEXT")
        args.mode = "separator"
    args.mode = args.mode or "file"

    import h5py
    import numpy as np
    import tiktoken

    enc = tiktoken.get_encoding(args.encoding)
    vocab = int(enc.n_vocab)
    eot = getattr(enc, "eot_token", None)
    dtype = np.uint16 if vocab <= 65536 else np.int32
    files = input_files(args.inputs, args.output)
    tmp = f"{args.output}.tmp.{os.getpid()}"
    offsets = [0]
    n_text = 0
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["version"] = np.int64(VERSION)
            f.attrs["vocab_size"] = np.int64(vocab)
            f.attrs["tokenizer"] = f"tiktoken:{args.encoding}"
            tokens = f.create_dataset("tokens", shape=(0,), maxshape=(None,), dtype=dtype,
                                      chunks=(CHUNK,), compression="gzip", compression_opts=6,
                                      shuffle=True)
            pending = []
            pending_n = 0

            def flush():
                nonlocal pending, pending_n
                if not pending_n:
                    return
                start = tokens.shape[0]
                tokens.resize((start + pending_n,))
                tokens[start:] = np.concatenate(pending).astype(dtype)
                pending, pending_n = [], 0

            for doc in documents(files, args.mode, args.separator):
                ids = enc.encode_ordinary(doc)
                if eot is not None and not args.no_eot:
                    ids.append(eot)
                n_text += len(doc.encode("utf-8"))
                pending.append(np.asarray(ids, dtype=np.int64))
                pending_n += len(ids)
                offsets.append(offsets[-1] + len(ids))
                if pending_n >= CHUNK:
                    flush()
            flush()
            if offsets[-1] == 0:
                raise SystemExit(f"{args.output}: no tokens to write; nothing was written")
            f.create_dataset("doc_offsets", data=np.asarray(offsets, dtype=np.int64),
                             chunks=(min(len(offsets), CHUNK),), compression="gzip",
                             compression_opts=6)
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    size = os.path.getsize(args.output)
    n_tok = offsets[-1]
    print(f"wrote {args.output}: {len(offsets) - 1} documents from {len(files)} files, {n_tok} "
          f"tokens ({np.dtype(dtype).itemsize} bytes each, tiktoken:{args.encoding}, vocab "
          f"{vocab}) from {n_text} bytes of text; file {size} bytes, compression ratio "
          f"{n_tok * np.dtype(dtype).itemsize / size:.2f}")


if __name__ == "__main__":
    main()
