from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from nfaas.errors import DescriptorError, PackageError
from nfaas.packages.builder import ZIP_EPOCH, build_package, verify_package
from nfaas.packages.csar import read_package
from tests.packages.kit import HELLO_YAML, app_files


def _write(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def test_builds_the_example_application(example_source: Path) -> None:
    data = build_package(example_source)
    contents = read_package(data)
    assert contents.kind == "application"
    assert (contents.name, contents.version) == ("iot-telemetry", "1.0.0")
    assert contents.application is not None
    assert contents.application.provider == "nfaas examples"
    assert [f.name for f in contents.functions] == ["ingest", "summary", "classify"]
    assert contents.meta.entry_manifest == "iot-telemetry.mf"
    assert contents.meta.created_by.startswith("nfaas ")
    assert contents.manifest.metadata == {
        "application_name": "iot-telemetry",
        "application_provider": "nfaas examples",
        "application_version": "1.0.0",
    }
    assert set(contents.code_files("ingest")) == {"ingest.py"}
    assert set(contents.code_files("classify")) == {"classify.wat"}


def test_same_folder_gives_the_same_bytes(example_source: Path, tmp_path: Path) -> None:
    first = build_package(example_source)
    copy = tmp_path / "elsewhere"
    shutil.copytree(example_source, copy)
    for path in copy.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
        if path.is_file():
            path.chmod(0o755)
    assert build_package(copy) == first
    assert build_package(example_source) == first


def test_zip_layout_is_sorted_with_fixed_times_and_modes(example_source: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(build_package(example_source))) as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert "TOSCA-Metadata/TOSCA.meta" in names and "iot-telemetry.mf" in names
    assert {info.date_time for info in infos} == {ZIP_EPOCH}
    assert {info.external_attr >> 16 for info in infos} == {0o100644}
    assert {info.compress_type for info in infos} == {zipfile.ZIP_DEFLATED}


def test_builds_a_function_package(tmp_path: Path) -> None:
    files = app_files()
    source = _write(
        tmp_path / "src",
        {
            "Definitions/hello.yaml": files["Definitions/hello.yaml"],
            "Files/hello/hello.py": files["Files/hello/hello.py"],
        },
    )
    contents = read_package(build_package(source))
    assert contents.kind == "function"
    assert contents.meta.entry_definitions == "Definitions/hello.yaml"
    assert contents.meta.entry_manifest == "hello.mf"
    assert contents.manifest.metadata == {
        "function_name": "hello",
        "function_version": "1.0.0",
        "application_name": "demo",
    }


def test_release_date_goes_into_the_metadata(tmp_path: Path) -> None:
    source = _write(tmp_path / "src", app_files())
    data = build_package(source, release_date_time="2026-01-02T03:04:05Z")
    assert verify_package(data).manifest.metadata["release_date_time"] == "2026-01-02T03:04:05Z"


def test_skips_hidden_files_and_bytecode(tmp_path: Path) -> None:
    source = _write(
        tmp_path / "src",
        {
            **app_files(),
            ".git/config": b"x",
            "Files/hello/.secret": b"x",
            "Files/hello/__pycache__/hello.cpython-311.pyc": b"x",
            "Files/hello/stale.pyc": b"x",
            "LICENSE": b"Apache-2.0\n",
        },
    )
    files = read_package(build_package(source)).files
    assert "LICENSE" in files
    assert not [name for name in files if ".git" in name or "pycache" in name or ".secret" in name]
    assert not [name for name in files if name.endswith(".pyc")]


def test_no_descriptor(tmp_path: Path) -> None:
    source = _write(tmp_path / "src", {"Files/a.py": b""})
    with pytest.raises(PackageError, match="no descriptor of kind"):
        build_package(source)


def test_two_application_descriptors(tmp_path: Path) -> None:
    files = app_files()
    source = _write(
        tmp_path / "src", {**files, "Definitions/copy.yaml": files["Definitions/demo.yaml"]}
    )
    with pytest.raises(PackageError, match="2 ServerlessApplication descriptors"):
        build_package(source)


def test_two_function_descriptors_and_no_application(tmp_path: Path) -> None:
    files = app_files({"Definitions/demo.yaml": None})
    source = _write(tmp_path / "src", files)
    with pytest.raises(PackageError, match="2 ServerlessFunction descriptors"):
        build_package(source)


def test_bad_source_fails_as_onboarding_would(tmp_path: Path) -> None:
    source = _write(tmp_path / "src", app_files({"Files/tick.py": None}))
    with pytest.raises(DescriptorError) as info:
        build_package(source)
    assert info.value.file == "Definitions/tick.yaml"
    assert info.value.errors[0]["loc"] == "code.path"


def test_invalid_entry_descriptor(tmp_path: Path) -> None:
    hello = HELLO_YAML.replace("instance_threshold: 4", "instance_threshold: -1")
    source = _write(
        tmp_path / "src", {"Definitions/hello.yaml": hello.encode(), "Files/hello/h.py": b""}
    )
    with pytest.raises(DescriptorError, match=r"scaling.instance_threshold"):
        build_package(source)


def test_symlink_in_the_source(tmp_path: Path) -> None:
    source = _write(tmp_path / "src", app_files())
    (source / "Files/hello/link.py").symlink_to(source / "Files/tick.py")
    with pytest.raises(PackageError, match=r"link.py is a symbolic link"):
        build_package(source)


def test_generated_files_may_not_be_in_the_source(tmp_path: Path) -> None:
    source = _write(tmp_path / "src", {**app_files(), "TOSCA-Metadata/TOSCA.meta": b"x"})
    with pytest.raises(PackageError, match=r"TOSCA.meta exists; the builder generates it"):
        build_package(source)


def test_source_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="is not a folder"):
        build_package(tmp_path / "absent")
