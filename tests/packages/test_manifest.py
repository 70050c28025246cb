from __future__ import annotations

import hashlib

import pytest

from nfaas.errors import IntegrityError, ManifestError
from nfaas.packages.manifest import (
    FileDigest,
    ToscaMeta,
    parse_manifest,
    parse_tosca_meta,
    render_manifest,
    render_tosca_meta,
    verify_manifest,
)

TOSCA = b"""TOSCA-Meta-File-Version: 1.0
CSAR-Version: 1.1
Created-By: someone
Entry-Definitions: Definitions/app.yaml
ETSI-Entry-Manifest: app.mf
ETSI-Entry-Licenses: Licenses
"""

FILES = {"a.txt": b"alpha", "Files/b.py": b"print('b')\n"}
SHA_A = hashlib.sha256(b"alpha").hexdigest()
SHA_B = hashlib.sha256(b"print('b')\n").hexdigest()

MANIFEST = f"""metadata:
  application_name: demo
  application_version: 1.0.0

# a comment
Source: a.txt
Algorithm: SHA-256
Hash: {SHA_A}

Source: Files/b.py
Algorithm: SHA-256
Hash: {SHA_B}
""".encode()


def _manifest(blocks: str, metadata: str = "metadata:\n  k: v\n") -> bytes:
    return (metadata + "\n" + blocks).encode()


# --- TOSCA.meta -------------------------------------------------------------------------


def test_parse_tosca_meta() -> None:
    meta = parse_tosca_meta(TOSCA)
    assert meta == ToscaMeta(
        meta_file_version="1.0",
        csar_version="1.1",
        created_by="someone",
        entry_definitions="Definitions/app.yaml",
        entry_manifest="app.mf",
        other={"ETSI-Entry-Licenses": "Licenses"},
    )
    assert parse_tosca_meta(render_tosca_meta(meta)) == meta


def test_tosca_meta_crlf_and_blank_lines() -> None:
    assert parse_tosca_meta(TOSCA.replace(b"\n", b"\r\n\r\n")).entry_manifest == "app.mf"


def test_tosca_meta_missing_key() -> None:
    data = TOSCA.replace(b"ETSI-Entry-Manifest: app.mf\n", b"")
    with pytest.raises(ManifestError, match=r"missing required key.*ETSI-Entry-Manifest"):
        parse_tosca_meta(data)


def test_tosca_meta_malformed_line_has_its_number() -> None:
    data = TOSCA.replace(b"Created-By: someone", b"Created-By someone")
    with pytest.raises(ManifestError, match=r"TOSCA.meta line 3: expected 'Key: value'"):
        parse_tosca_meta(data)


def test_tosca_meta_duplicate_key() -> None:
    with pytest.raises(ManifestError, match="line 7: key 'CSAR-Version' given twice"):
        parse_tosca_meta(TOSCA + b"CSAR-Version: 1.1\n")


def test_tosca_meta_unsupported_version() -> None:
    data = TOSCA.replace(b"TOSCA-Meta-File-Version: 1.0", b"TOSCA-Meta-File-Version: 2.0")
    with pytest.raises(ManifestError, match=r"TOSCA-Meta-File-Version '2.0'"):
        parse_tosca_meta(data)


def test_tosca_meta_entry_outside_the_package() -> None:
    data = TOSCA.replace(b"Definitions/app.yaml", b"../app.yaml")
    with pytest.raises(ManifestError, match="Entry-Definitions is not a valid package path"):
        parse_tosca_meta(data)


def test_tosca_meta_not_utf8() -> None:
    with pytest.raises(ManifestError, match="not UTF-8"):
        parse_tosca_meta(b"\xff\xfe\x00")


# --- manifest ---------------------------------------------------------------------------


def test_parse_manifest() -> None:
    manifest = parse_manifest(MANIFEST, "app.mf")
    assert manifest.path == "app.mf"
    assert manifest.metadata == {"application_name": "demo", "application_version": "1.0.0"}
    assert manifest.entries == {
        "a.txt": FileDigest("SHA-256", SHA_A),
        "Files/b.py": FileDigest("SHA-256", SHA_B),
    }


@pytest.mark.parametrize("spelling", ["SHA-256", "SHA256", "sha-256", "sha256", "Sha_256"])
def test_sha256_spellings(spelling: str) -> None:
    data = _manifest(f"Source: a.txt\nAlgorithm: {spelling}\nHash: {SHA_A.upper()}\n")
    assert parse_manifest(data, "app.mf").entries["a.txt"] == FileDigest("SHA-256", SHA_A)


@pytest.mark.parametrize("spelling", ["SHA-512", "sha512"])
def test_sha512_accepted(spelling: str) -> None:
    sha = hashlib.sha512(b"alpha").hexdigest()
    data = _manifest(f"Source: a.txt\nAlgorithm: {spelling}\nHash: {sha}\n")
    manifest = parse_manifest(data, "app.mf")
    assert manifest.entries["a.txt"] == FileDigest("SHA-512", sha)
    verify_manifest(manifest, {"a.txt": b"alpha"})


def test_unknown_algorithm_is_named_with_its_line() -> None:
    data = _manifest(f"Source: a.txt\nAlgorithm: MD5\nHash: {SHA_A}\n")
    with pytest.raises(
        ManifestError, match=r"app.mf line 5: unknown hash algorithm 'MD5' for 'a.txt'"
    ):
        parse_manifest(data, "app.mf")


def test_hash_of_the_wrong_length() -> None:
    data = _manifest(f"Source: a.txt\nAlgorithm: SHA-512\nHash: {SHA_A}\n")
    with pytest.raises(ManifestError, match=r"line 6: Hash of 'a.txt' is not a SHA-512 hex digest"):
        parse_manifest(data, "app.mf")


def test_block_missing_its_hash() -> None:
    data = _manifest(
        f"Source: a.txt\nAlgorithm: SHA-256\n\nSource: b\nAlgorithm: SHA-256\nHash: {SHA_A}\n"
    )
    with pytest.raises(ManifestError, match="line 4: file block lacks Hash"):
        parse_manifest(data, "app.mf")


def test_source_starts_a_new_block_without_a_blank_line() -> None:
    blocks = f"Source: a.txt\nAlgorithm: SHA-256\nHash: {SHA_A}\nSource: Files/b.py\nAlgorithm: SHA-256\nHash: {SHA_B}\n"
    assert set(parse_manifest(_manifest(blocks), "app.mf").entries) == {"a.txt", "Files/b.py"}


def test_unknown_key_in_a_file_block() -> None:
    data = _manifest(f"Source: a.txt\nAlgorithm: SHA-256\nHash: {SHA_A}\nSignature: x\n")
    with pytest.raises(ManifestError, match="line 7: unknown key 'Signature'"):
        parse_manifest(data, "app.mf")


def test_missing_metadata_block() -> None:
    with pytest.raises(ManifestError, match="line 1: the manifest must start with a 'metadata:'"):
        parse_manifest(f"Source: a.txt\nAlgorithm: SHA-256\nHash: {SHA_A}\n".encode(), "app.mf")


def test_empty_manifest() -> None:
    with pytest.raises(ManifestError, match=r"app.mf: the manifest is empty"):
        parse_manifest(b"\n# nothing\n", "app.mf")


def test_duplicate_source() -> None:
    block = f"Source: a.txt\nAlgorithm: SHA-256\nHash: {SHA_A}\n"
    with pytest.raises(ManifestError, match=r"line 8: Source 'a.txt' is listed twice"):
        parse_manifest(_manifest(block + "\n" + block), "app.mf")


def test_source_outside_the_package() -> None:
    data = _manifest(f"Source: ../a.txt\nAlgorithm: SHA-256\nHash: {SHA_A}\n")
    with pytest.raises(ManifestError, match="line 4: invalid Source path"):
        parse_manifest(data, "app.mf")


def test_signed_manifest_is_refused_clearly() -> None:
    data = MANIFEST + b"\n-----BEGIN CMS-----\nabc\n-----END CMS-----\n"
    with pytest.raises(ManifestError, match="signatures \\(CMS\\) are not supported"):
        parse_manifest(data, "app.mf")


def test_render_round_trip() -> None:
    rendered = render_manifest({"application_name": "demo"}, FILES, "SHA-512")
    manifest = parse_manifest(rendered, "x.mf")
    assert manifest.metadata == {"application_name": "demo"}
    assert list(manifest.entries) == sorted(FILES)
    verify_manifest(manifest, {**FILES, "x.mf": rendered})


# --- verification -----------------------------------------------------------------------


def test_verify_accepts_the_manifest_itself_unlisted() -> None:
    verify_manifest(parse_manifest(MANIFEST, "app.mf"), {**FILES, "app.mf": MANIFEST})


def test_verify_unlisted_file() -> None:
    files = {**FILES, "Files/extra.py": b"", "app.mf": MANIFEST}
    with pytest.raises(ManifestError, match=r"not listed in the manifest: Files/extra.py"):
        verify_manifest(parse_manifest(MANIFEST, "app.mf"), files)


def test_verify_missing_file() -> None:
    files = {"a.txt": b"alpha", "app.mf": MANIFEST}
    with pytest.raises(ManifestError, match=r"missing from the archive: Files/b.py"):
        verify_manifest(parse_manifest(MANIFEST, "app.mf"), files)


def test_verify_hash_mismatch_names_file_algorithm_and_both_digests() -> None:
    files = {**FILES, "a.txt": b"tampered"}
    actual = hashlib.sha256(b"tampered").hexdigest()
    with pytest.raises(IntegrityError) as info:
        verify_manifest(parse_manifest(MANIFEST, "app.mf"), files)
    error = info.value
    assert (
        f"a.txt: SHA-256 digest mismatch: the manifest says {SHA_A}, the file has {actual}"
        == error.detail
    )
    assert error.extra == {
        "file": "a.txt",
        "algorithm": "SHA-256",
        "expected": SHA_A,
        "actual": actual,
    }


def test_verify_manifest_listing_itself() -> None:
    data = _manifest(f"Source: app.mf\nAlgorithm: SHA-256\nHash: {SHA_A}\n")
    with pytest.raises(ManifestError, match="the manifest cannot list itself"):
        verify_manifest(parse_manifest(data, "app.mf"), {"app.mf": data})


def test_verify_lists_at_most_ten_culprits() -> None:
    files = {**FILES, "app.mf": MANIFEST, **{f"Files/x{i:02}": b"" for i in range(25)}}
    with pytest.raises(ManifestError, match=r"Files/x09 and 15 more$"):
        verify_manifest(parse_manifest(MANIFEST, "app.mf"), files)
