"""deploy/kubernetes: every manifest is valid against the Kubernetes schemas (kubernetes-validate
ships them; nothing is downloaded), and the manifests keep their promises: probes, resources,
non-root, and agents reaching only the proxy."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from support import BUNDLED_POLICIES, ROOT

K8S = ROOT / "deploy" / "kubernetes"
VERSION = "1.37.0"


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return loaded


def documents() -> list[dict[str, Any]]:
    return [d for name in kustomization()["resources"] for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] == kind]


@pytest.mark.parametrize("document", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_is_valid_against_the_kubernetes_schema(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, VERSION, strict=True)


def test_the_validator_refuses_an_unknown_field() -> None:
    deployment = copy.deepcopy(by_kind("Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSION, strict=True)


def test_kustomization_names_files_that_exist_or_have_examples() -> None:
    k = kustomization()
    for generator in k["configMapGenerator"]:
        for file in generator["files"]:  # the policies folder `bastion init` makes of the bundled one
            assert file.startswith("../../policies/") and (BUNDLED_POLICIES / Path(file).name).exists(), file
    secrets_readme = (K8S / "secrets" / "README.md").read_text()
    for generator in k["secretGenerator"]:
        for env in generator.get("envs", []):
            assert (K8S / f"{env}.example").exists(), env
        for file in generator.get("files", []):
            assert Path(file).name in secrets_readme, f"secrets/README.md does not say how to make {file}"
    assert (K8S / "secrets" / ".gitignore").read_text().startswith("*\n")
    policies = {Path(f).name for g in k["configMapGenerator"] for f in g["files"]}
    bundled = {p.name for p in BUNDLED_POLICIES.iterdir() if p.is_file()} - {"keys.yaml", "operators.yaml"}
    assert policies == bundled


def test_every_container_has_probes_resources_and_runs_as_non_root() -> None:
    for deployment in by_kind("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert {"readinessProbe", "livenessProbe"} <= container.keys(), container["name"]
            assert container["resources"]["requests"] and container["image"] == "bastion"
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
    names = {d["metadata"]["name"] for d in by_kind("Deployment")}
    assert names == {"bastion-proxy", "bastion-collector", "bastion-dashboard"}
    (hpa,) = by_kind("HorizontalPodAutoscaler")
    (pdb,) = by_kind("PodDisruptionBudget")
    assert hpa["spec"]["scaleTargetRef"]["name"] == pdb["metadata"]["name"] == "bastion-proxy"


def test_agents_reach_only_the_proxy() -> None:
    policies = by_kind("NetworkPolicy")
    default = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert default and default[0]["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in default[0]["spec"]
    open_to_all = [
        (p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], rule)
        for p in policies
        for rule in p["spec"].get("ingress", [])
        if not rule.get("from")
    ]
    assert [name for name, _ in open_to_all] == ["bastion-proxy"]
    assert sorted(port["port"] for port in open_to_all[0][1]["ports"]) == [8080, 8081]


def test_secrets_reach_only_who_needs_them() -> None:
    proxy, collector, dashboard = (
        next(d for d in by_kind("Deployment") if d["metadata"]["name"] == f"bastion-{n}")["spec"]["template"]["spec"]
        for n in ("proxy", "collector", "dashboard")
    )
    text = {name: yaml.safe_dump(pod) for name, pod in (("p", proxy), ("c", collector), ("d", dashboard))}
    assert "bastion-providers" in text["p"] and "bastion-providers" not in text["c"]
    assert "operators.yaml" not in text["p"]  # the proxy never sees operators' tokens
    assert "secret" not in text["d"].lower()
