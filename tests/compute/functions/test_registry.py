"""Packages are reproducible and checked; deploys store them content-addressed and register versions."""

from __future__ import annotations

import base64
import io
import zipfile

import pytest

from compute.functions import package, registry
from compute.functions.package import PackageError
from compute.functions.registry import DeployIn
from cxmpute.errors import NotFound
from cxmpute.settings import get_settings

from .conftest import write_function


def deploy_in(data: bytes, **config) -> DeployIn:
    return DeployIn(package_base64=base64.b64encode(data).decode(), **config)


def test_the_same_folder_always_packs_to_the_same_bytes(tmp_path, function_dir):
    (function_dir / "__pycache__").mkdir()
    (function_dir / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"\0cache")
    first = package.build(function_dir)
    copy = write_function(tmp_path / "elsewhere")
    assert package.build(copy) == first
    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert names == ["handler.py", "helper.txt"]


@pytest.mark.parametrize(
    "handler, field, words",
    [
        ("handler:missing", "handler", "no top-level function 'missing'"),
        ("nomodule:handler", "handler", "no nomodule.py"),
        ("not a handler", "handler", "module:function"),
    ],
)
def test_a_package_without_its_handler_is_refused_naming_the_field(package_bytes, handler, field, words):
    with pytest.raises(PackageError) as caught:
        package.check(package_bytes, handler, 2**20)
    assert caught.value.field == field and words in caught.value.message and caught.value.status_code == 422


def test_unsafe_or_oversized_packages_are_refused(package_bytes):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("../escape.py", "def handler(e, c): pass\n")
    with pytest.raises(PackageError, match="leaves the package folder"):
        package.check(buf.getvalue(), "escape:handler", 2**20)
    with pytest.raises(PackageError, match="not a zip"):
        package.check(b"plain bytes", "handler:handler", 2**20)
    with pytest.raises(PackageError, match="limit"):
        package.check(package_bytes, "handler:handler", 100)


def test_deploys_register_versions_and_identical_packages_are_stored_once(tmp_path, package_bytes, platform_db_url):
    settings = get_settings().model_copy(update={"database_url": platform_db_url})
    owner = f"owner-{tmp_path.name}"
    first, created = registry.deploy(settings, owner, "resize", deploy_in(package_bytes))
    assert created and first.version == 1 and first.size == len(package_bytes)
    again, created = registry.deploy(settings, owner, "resize", deploy_in(package_bytes))
    assert not created and again.version == 1
    tuned, created = registry.deploy(settings, owner, "resize", deploy_in(package_bytes, memory_mb=512))
    assert created and tuned.version == 2 and tuned.cid == first.cid  # same content, same address
    changed = package.build(write_function(tmp_path / "v3", "def handler(event, context):\n    return 3\n"))
    third, _ = registry.deploy(settings, owner, "resize", deploy_in(changed))
    assert third.version == 3 and third.cid != first.cid
    assert registry.package_bytes(settings, third) == changed
    assert [v.version for v in registry.versions(settings, owner, "resize")] == [3, 2, 1]
    assert registry.version(settings, owner, "resize").version == 3
    assert registry.version(settings, owner, "resize", 2).memory_mb == 512
    assert [f.name for f in registry.latest_all(settings, owner)] == ["resize"]
    with pytest.raises(NotFound) as caught:
        registry.version(settings, "someone-else", "resize")
    assert caught.value.field == "name"


def test_bad_names_and_bad_base64_are_refused(package_bytes):
    with pytest.raises(PackageError) as caught:
        registry.deploy(get_settings(), "o", "Bad Name", deploy_in(package_bytes))
    assert caught.value.field == "name"
    with pytest.raises(PackageError) as caught:
        registry.deploy(get_settings(), "o", "ok", DeployIn(package_base64="***"))
    assert caught.value.field == "package_base64"
