from __future__ import annotations

import hashlib
import stat

import pytest

from nfaas.errors import (
    DescriptorError,
    IntegrityError,
    ManifestError,
    NotFound,
    PackageError,
    UnsafeArchive,
)
from nfaas.packages.csar import read_package
from nfaas.packages.descriptors import UdpTrigger
from tests.packages.kit import (
    APP_YAML,
    HELLO_YAML,
    app_files,
    entry_info,
    manifest_text,
    package,
    tosca_meta,
    zip_bytes,
)

FUNCTION_YAML = HELLO_YAML.replace("version: 1.0.0", "version: 1.1.0")


def _descriptor_error(data: bytes) -> DescriptorError:
    with pytest.raises(DescriptorError) as info:
        read_package(data)
    return info.value


# --- accepted packages ------------------------------------------------------------------


def test_reads_an_application_package() -> None:
    data = package()
    contents = read_package(data)
    assert contents.kind == "application"
    assert contents.application is not None and contents.application.name == "demo"
    assert (contents.name, contents.version, contents.app_name) == ("demo", "1.2.0", "demo")
    assert [f.name for f in contents.functions] == ["hello", "tick"]
    assert contents.function_files == {
        "hello": "Definitions/hello.yaml",
        "tick": "Definitions/tick.yaml",
    }
    assert contents.sha256 == hashlib.sha256(data).hexdigest()
    assert contents.meta.entry_definitions == "Definitions/demo.yaml"
    assert contents.manifest.metadata["application_name"] == "demo"
    assert "TOSCA-Metadata/TOSCA.meta" in contents.files
    hello = contents.function("hello")
    assert hello.triggers[1] == UdpTrigger(port=9001)
    assert hello.scaling.max_quick_start == 2


def test_code_files_of_a_folder_and_of_a_single_file() -> None:
    contents = read_package(package())
    assert contents.code_files("hello") == {
        "hello.py": b"def handle(event, context):\n    return 'hello'\n",
        "lib/util.py": b"X = 1\n",
    }
    assert contents.code_files("tick") == {
        "tick.py": b"def handle(event, context):\n    return None\n"
    }


def test_code_files_of_an_unknown_function() -> None:
    with pytest.raises(NotFound, match="no function 'nope'"):
        read_package(package()).code_files("nope")


def test_sha512_manifest_accepted() -> None:
    contents = read_package(package(algorithm="SHA-512"))
    assert {d.algorithm for d in contents.manifest.entries.values()} == {"SHA-512"}


def test_reads_a_function_package() -> None:
    files = {
        "Definitions/hello.yaml": FUNCTION_YAML.encode(),
        "Files/hello/hello.py": b"def handle(event, context):\n    return 'v2'\n",
    }
    metadata = {"application_name": "demo", "function_name": "hello", "function_version": "1.1.0"}
    data = package(files, entry="Definitions/hello.yaml", manifest="hello.mf", metadata=metadata)
    contents = read_package(data)
    assert contents.kind == "function"
    assert contents.application is None
    assert (contents.name, contents.version, contents.app_name) == ("hello", "1.1.0", "demo")
    assert contents.function_files == {"hello": "Definitions/hello.yaml"}
    assert contents.code_files("hello") == {"hello.py": files["Files/hello/hello.py"]}


def test_function_package_must_name_its_application() -> None:
    files = {
        "Definitions/hello.yaml": FUNCTION_YAML.replace("application: demo\n", "").encode(),
        "Files/hello/hello.py": b"",
    }
    error = _descriptor_error(package(files, entry="Definitions/hello.yaml", metadata={}))
    assert error.file == "Definitions/hello.yaml"
    assert error.errors[0]["loc"] == "application"


def test_code_at_a_url_needs_no_file_and_is_fetched_separately() -> None:
    url_code = "code: {url: 'https://example.org/hello.zip', hash: 'sha256:" + "0" * 64 + "'}"
    hello = HELLO_YAML.replace("code: {path: Files/hello}", url_code)
    contents = read_package(
        package(
            app_files(
                {
                    "Definitions/hello.yaml": hello,
                    "Files/hello/hello.py": None,
                    "Files/hello/lib/util.py": None,
                }
            )
        )
    )
    assert contents.function("hello").code.url == "https://example.org/hello.zip"
    with pytest.raises(PackageError, match="fetch_code"):
        contents.code_files("hello")


# --- archive and manifest failures, through read_package ----------------------------------


def test_corrupt_zip() -> None:
    with pytest.raises(PackageError, match="not a readable zip"):
        read_package(package()[:-30])


def test_missing_tosca_meta() -> None:
    with pytest.raises(ManifestError, match=r"TOSCA-Metadata/TOSCA.meta is missing"):
        read_package(zip_bytes(sorted(app_files().items())))


def test_missing_entry_manifest() -> None:
    files = {**app_files(), "TOSCA-Metadata/TOSCA.meta": tosca_meta(manifest="gone.mf")}
    with pytest.raises(ManifestError, match=r"ETSI-Entry-Manifest 'gone.mf' is not in the archive"):
        read_package(zip_bytes(files.items()))


def test_missing_listed_file() -> None:
    files = app_files()
    listed = {**files, "Files/hello/missing.py": b"lost"}
    with pytest.raises(ManifestError, match=r"missing from the archive: Files/hello/missing.py"):
        read_package(package(files, listed=listed))


def test_extra_unlisted_file() -> None:
    with pytest.raises(ManifestError, match=r"not listed in the manifest: Files/hello/extra.py"):
        read_package(package(extra={"Files/hello/extra.py": b"import os"}))


def test_hash_mismatch() -> None:
    files = app_files()
    listed = {**files, "Files/tick.py": b"what the provider meant to ship"}
    with pytest.raises(IntegrityError, match=r"Files/tick.py: SHA-256 digest mismatch") as info:
        read_package(package(files, listed=listed))
    assert info.value.extra["file"] == "Files/tick.py"


def test_unknown_hash_algorithm() -> None:
    files = {**app_files(), "TOSCA-Metadata/TOSCA.meta": tosca_meta()}
    manifest = manifest_text(files).replace(b"Algorithm: SHA-256", b"Algorithm: CRC32", 1)
    files["demo.mf"] = manifest
    with pytest.raises(ManifestError, match="unknown hash algorithm 'CRC32'"):
        read_package(zip_bytes(files.items()))


def test_path_traversal() -> None:
    with pytest.raises(UnsafeArchive, match=r"'Files/\.\./\.\./etc/cron.d/x'"):
        read_package(package(extra={"Files/../../etc/cron.d/x": b"* * * * * root sh"}))


def test_absolute_path() -> None:
    with pytest.raises(UnsafeArchive, match="'/etc/passwd': absolute paths"):
        read_package(package(extra={"/etc/passwd": b"root::0:0::/:/bin/sh"}))


def test_symlink_entry() -> None:
    link = entry_info("Files/hello/link.py", stat.S_IFLNK | 0o777)
    data = zip_bytes([*sorted(app_files().items()), (link, b"/etc/shadow")])
    with pytest.raises(UnsafeArchive, match=r"'Files/hello/link.py' is a symbolic link"):
        read_package(data)


def test_zip_bomb() -> None:
    with pytest.raises(UnsafeArchive, match=r"'Files/hello/data.bin' declares a compression ratio"):
        read_package(package(extra={"Files/hello/data.bin": bytes(8 * 1024 * 1024)}))


def test_manifest_metadata_must_match_the_descriptor() -> None:
    data = package(metadata={"application_name": "demo", "application_version": "9.9.9"})
    with pytest.raises(
        ManifestError,
        match=r"application_version is '9.9.9' but Definitions/demo.yaml says '1.2.0'",
    ):
        read_package(data)


# --- descriptor failures ----------------------------------------------------------------


def test_invalid_descriptor_names_file_and_field() -> None:
    hello = HELLO_YAML.replace("instance_threshold: 4", "instance_threshold: 0")
    error = _descriptor_error(package(app_files({"Definitions/hello.yaml": hello})))
    assert error.file == "Definitions/hello.yaml"
    assert error.errors == [
        {"loc": "scaling.instance_threshold", "msg": "Input should be greater than or equal to 1"}
    ]
    assert error.detail.startswith(
        "Definitions/hello.yaml: invalid FunctionDescriptor: scaling.instance_threshold:"
    )


def test_invalid_trigger_field_path_has_no_discriminator() -> None:
    hello = HELLO_YAML.replace("port: 9001", "port: 70000")
    error = _descriptor_error(package(app_files({"Definitions/hello.yaml": hello})))
    assert [e["loc"] for e in error.errors] == ["triggers.1.port"]


def test_several_invalid_fields_are_all_reported() -> None:
    hello = HELLO_YAML.replace("memory", "memory").replace(
        "handler: hello:handle", "handler: hello:handle\nbogus: 1\nresources: {memory_mb: 1}"
    )
    error = _descriptor_error(package(app_files({"Definitions/hello.yaml": hello})))
    assert {e["loc"] for e in error.errors} == {"bogus", "resources.memory_mb"}
    assert "bogus" in error.detail and "resources.memory_mb" in error.detail


def test_model_level_rule_is_reported() -> None:
    hello = HELLO_YAML.replace("max_quick_start: 2", "max_quick_start: 9")
    error = _descriptor_error(package(app_files({"Definitions/hello.yaml": hello})))
    assert "max_quick_start may not exceed" in error.detail


def test_number_where_text_is_expected_gets_a_hint() -> None:
    hello = HELLO_YAML.replace('version: "3.11"', "version: 3.11")
    error = _descriptor_error(package(app_files({"Definitions/hello.yaml": hello})))
    assert error.errors[0]["loc"] == "runtime.version"
    assert "quote" in error.errors[0]["msg"]


def test_yaml_syntax_error_has_the_line() -> None:
    hello = HELLO_YAML.replace("handler: hello:handle", "handler: [unclosed")
    error = _descriptor_error(package(app_files({"Definitions/hello.yaml": hello})))
    assert error.file == "Definitions/hello.yaml"
    assert "Definitions/hello.yaml line 8" in error.detail


def test_yaml_aliases_are_refused() -> None:
    hello = HELLO_YAML + "environment: &e {A: '1'}\ndescription: *e\n"
    error = _descriptor_error(package(app_files({"Definitions/hello.yaml": hello})))
    assert "aliases" in error.detail


def test_yaml_duplicate_keys_are_refused() -> None:
    hello = HELLO_YAML + "handler: other:handle\n"
    error = _descriptor_error(package(app_files({"Definitions/hello.yaml": hello})))
    assert "duplicate key 'handler'" in error.detail


def test_descriptor_that_is_not_a_mapping() -> None:
    error = _descriptor_error(package(app_files({"Definitions/hello.yaml": "- just\n- a list\n"})))
    assert "must be a YAML mapping" in error.detail


def test_entry_of_unknown_kind() -> None:
    error = _descriptor_error(
        package(
            app_files(
                {"Definitions/demo.yaml": APP_YAML.replace("ServerlessApplication", "Deployment")}
            )
        )
    )
    assert error.file == "Definitions/demo.yaml"
    assert error.errors[0]["loc"] == "kind"


def test_function_referenced_but_absent() -> None:
    error = _descriptor_error(package(app_files({"Definitions/tick.yaml": None})))
    assert error.file == "Definitions/demo.yaml"
    assert error.errors[0]["loc"] == "functions.1.descriptor"
    assert "'Definitions/tick.yaml', which is not in the package" in error.detail


def test_function_name_differs_from_the_reference() -> None:
    tick = APP_YAML.replace("  - name: tick\n", "  - name: tock\n")
    error = _descriptor_error(package(app_files({"Definitions/demo.yaml": tick})))
    assert error.file == "Definitions/tick.yaml"
    assert error.errors[0]["loc"] == "name"
    assert "'tock'" in error.detail and "'tick'" in error.detail


def test_function_of_another_application() -> None:
    hello = HELLO_YAML.replace("application: demo", "application: other")
    error = _descriptor_error(package(app_files({"Definitions/hello.yaml": hello})))
    assert error.errors[0]["loc"] == "application"


def test_function_runtime_not_listed_by_the_application() -> None:
    hello = HELLO_YAML.replace('version: "3.11"', 'version: "3.12"')
    error = _descriptor_error(package(app_files({"Definitions/hello.yaml": hello})))
    assert error.file == "Definitions/hello.yaml"
    assert error.errors[0]["loc"] == "runtime"
    assert "python:3.12" in error.detail


def test_code_path_absent() -> None:
    data = package(app_files({"Files/tick.py": None}))
    error = _descriptor_error(data)
    assert error.file == "Definitions/tick.yaml"
    assert error.errors[0]["loc"] == "code.path"
    assert "'Files/tick.py'" in error.detail


def test_code_folder_without_files() -> None:
    error = _descriptor_error(
        package(app_files({"Files/hello/hello.py": None, "Files/hello/lib/util.py": None}))
    )
    assert error.errors[0]["loc"] == "code.path"


def test_wasm_preopen_folder_absent() -> None:
    hello = HELLO_YAML + "wasm: {wasi: {preopens: {/data: Files/data}}}\n"
    error = _descriptor_error(package(app_files({"Definitions/hello.yaml": hello})))
    assert error.errors[0]["loc"] == "wasm.wasi.preopens./data"
