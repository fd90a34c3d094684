#!/usr/bin/env python3
"""Render deploy/k8s overlays without kustomize and validate every object (make deploy-check).

Implements the subset of kustomize the manifests use: ``resources`` (files and directories
with a kustomization.yaml), ``patches`` with a ``path`` (strategic merge: maps merge, lists of
named items merge by name, other lists are replaced) and ``images`` (name -> newName:newTag).
Each rendered object is checked with kubernetes-validate, strict, against Kubernetes
``--kubernetes-version``; ExternalSecret (a CRD the validator has no schema for) gets a check of
its own fields here. Writes ``<out>/<overlay>.yaml`` for checkov and the tests.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

Obj = dict[str, Any]
ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"


def _load_all(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _key(obj: Obj) -> tuple[str, str, str, str]:
    meta = obj.get("metadata", {})
    return obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"]


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge, the parts of it these manifests need."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for name, value in patch.items():
            merged[name] = merge(base[name], value) if name in base else copy.deepcopy(value)
        return merged
    named = (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(item, dict) and "name" in item for item in [*base, *patch])
    )
    if named:
        result = [copy.deepcopy(item) for item in base]
        index = {item["name"]: i for i, item in enumerate(result)}
        for item in patch:
            if item["name"] in index:
                result[index[item["name"]]] = merge(result[index[item["name"]]], item)
            else:
                result.append(copy.deepcopy(item))
        return result
    return copy.deepcopy(patch)


def _set_images(objects: list[Obj], images: list[Obj]) -> None:
    by_name = {image["name"]: image for image in images}
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            name, _, tag = container["image"].partition(":")
            image = by_name.get(name)
            if image is not None:
                new_tag = image.get("newTag", tag)
                container["image"] = image.get("newName", name) + (f":{new_tag}" if new_tag else "")


def render(directory: Path) -> list[Obj]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objects: list[Obj] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        if path.is_dir():
            objects.extend(render(path))
        else:
            objects.extend(_load_all(path))
    seen = [_key(obj) for obj in objects]
    if len(seen) != len(set(seen)):
        raise SystemExit(f"{directory}: an object is defined twice")
    for entry in kustomization.get("patches", []):
        for patch in _load_all(directory / entry["path"]):
            matches = [i for i, obj in enumerate(objects) if _key(obj) == _key(patch)]
            if len(matches) != 1:
                raise SystemExit(f"{directory}: patch {_key(patch)} matches {len(matches)} objects")
            objects[matches[0]] = merge(objects[matches[0]], patch)
    _set_images(objects, kustomization.get("images", []))
    return objects


def _check_external_secret(obj: Obj) -> list[str]:
    spec = obj.get("spec", {})
    problems = []
    if obj["apiVersion"] not in ("external-secrets.io/v1beta1", "external-secrets.io/v1"):
        problems.append(f"unknown apiVersion {obj['apiVersion']}")
    if set(spec.get("secretStoreRef", {})) != {"kind", "name"}:
        problems.append("spec.secretStoreRef must name kind and name")
    for item in spec.get("data", []):
        if set(item) != {"secretKey", "remoteRef"} or "key" not in item["remoteRef"]:
            problems.append(f"spec.data entry {item} needs secretKey and remoteRef.key")
    if not spec.get("target", {}).get("name"):
        problems.append("spec.target.name is missing")
    return problems


def validate(objects: list[Obj], version: str) -> list[str]:
    problems = []
    for obj in objects:
        where = "/".join(_key(obj)[1:])
        if obj["kind"] == "ExternalSecret":
            problems += [f"{where}: {p}" for p in _check_external_secret(obj)]
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{where}: {exc.message} at {'/'.join(map(str, exc.path))}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{where}: no schema for {obj['apiVersion']} {obj['kind']}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-version", default="1.31.0")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "k8s")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    for overlay in sorted((K8S / "overlays").iterdir()):
        objects = render(overlay)
        problems = validate(objects, args.kubernetes_version)
        (args.out / f"{overlay.name}.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
        for problem in problems:
            print(f"{overlay.name}: {problem}", file=sys.stderr)
        failed = failed or bool(problems)
        print(f"{overlay.name}: {len(objects)} objects, {len(problems)} problems "
              f"(Kubernetes {args.kubernetes_version}, strict)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
