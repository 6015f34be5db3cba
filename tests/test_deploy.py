"""The Kubernetes manifests, the Helm chart and the container build file under ``deploy/``.

The manifests are checked against the Kubernetes API schemas (``kubernetes-validate``,
which ships them: nothing is fetched). No Helm binary is installable from the
registries the project uses, so the chart is rendered here by a renderer of the few
template actions the chart uses (values, the release name, ``add``, ``toYaml |
nindent``); any other action fails the test, so the chart cannot grow one this
renderer would get wrong. Rendered with the release name ``shoal`` and its default
values, the chart gives exactly ``deploy/kubernetes/``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shoal.cli.plan import serve_parser

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "deploy" / "kubernetes"
CHART = ROOT / "deploy" / "helm" / "shoal"
K8S_VERSION = kubernetes_validate.latest_version()

_ACTION = re.compile(r"(?P<trim>[ \t]*\{\{-)?(?(trim)|\{\{) *(?P<body>.*?) *\}\}")


def _lookup(path: str, scope: dict[str, Any]) -> Any:
    value: Any = scope
    for part in path.lstrip(".").split("."):
        if not isinstance(value, dict) or part not in value:
            raise AssertionError(f"the chart refers to {path}, which is not set")
        value = value[part]
    return value


def _evaluate(body: str, scope: dict[str, Any]) -> str:
    if m := re.fullmatch(r"(\.[A-Za-z][\w.]*)", body):
        return str(_lookup(m[1], scope))
    if m := re.fullmatch(r"add (\.[\w.]+) (\.[\w.]+)", body):
        return str(_lookup(m[1], scope) + _lookup(m[2], scope))
    if m := re.fullmatch(r"toYaml (\.[\w.]+) \| nindent (\d+)", body):
        text = yaml.safe_dump(_lookup(m[1], scope), default_flow_style=False, sort_keys=False)
        pad = " " * int(m[2])
        return "\n" + "\n".join(pad + line for line in text.rstrip("\n").splitlines())
    raise AssertionError(f"template action {{{{ {body} }}}} is not one this test renders")


def render(template: str, values: dict[str, Any], release: str = "shoal") -> str:
    """``template`` rendered as Helm would, for the actions the chart uses."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    scope = {
        "Values": values,
        "Release": {"Name": release},
        "Chart": {"Name": chart["name"], "AppVersion": chart["appVersion"]},
    }
    return _ACTION.sub(lambda m: _evaluate(m["body"], scope), template)


def chart_documents(values: dict[str, Any] | None = None, release: str = "shoal") -> list[Any]:
    merged = yaml.safe_load((CHART / "values.yaml").read_text())
    merged.update(values or {})
    docs = []
    for path in sorted((CHART / "templates").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(render(path.read_text(), merged, release)) if d]
    return docs


def manifest_documents() -> list[Any]:
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(docs: list[Any]) -> dict[tuple[str, str], Any]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


@pytest.mark.parametrize("source", ["manifests", "chart"])
def test_every_document_is_valid_against_the_kubernetes_schemas(source: str) -> None:
    docs = manifest_documents() if source == "manifests" else chart_documents()
    assert {d["kind"] for d in docs} == {"StatefulSet", "Service", "PodDisruptionBudget"}
    for doc in docs:
        # strict: an unknown field (a typo) is an error too.
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_chart_with_its_defaults_renders_the_manifests() -> None:
    assert by_kind(chart_documents()) == by_kind(manifest_documents())


def test_the_chart_follows_its_values() -> None:
    docs = by_kind(chart_documents({"replicas": 5, "drain": 12, "peerPort": 9001}, "cache"))
    for doc in docs.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    spec = docs["StatefulSet", "cache"]["spec"]
    assert spec["replicas"] == 5
    assert spec["serviceName"] == "cache-peers"
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 12 + 25
    args = pod["containers"][0]["args"]
    assert "--drain=12s" in args
    assert "--dns=cache-peers" in args
    assert "--self=https://$(POD_IP):9001" in args
    assert docs["Service", "cache-peers"]["spec"]["ports"][0]["port"] == 9001


def test_members_find_each_other_and_stop_as_the_node_expects() -> None:
    docs = by_kind(manifest_documents())
    peers = docs["Service", "shoal-peers"]["spec"]
    assert peers["clusterIP"] == "None"
    assert peers["publishNotReadyAddresses"] is True
    assert "clusterIP" not in docs["Service", "shoal"]["spec"]
    sts = docs["StatefulSet", "shoal"]["spec"]
    assert sts["serviceName"] == "shoal-peers"
    pod = sts["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    # The arguments are real `shoal serve` flags, and the drain fits in the grace period.
    args = serve_parser().parse_args(shlex.split(" ".join(container["args"][1:])))
    assert args.dns == "shoal-peers"
    assert args.self_url == "https://$(POD_IP):8001"
    drain = float(args.drain.removesuffix("s"))
    assert pod["terminationGracePeriodSeconds"] > drain + 10
    # TLS and tokens come from Secrets, as files.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"]}
    assert secrets == {"tls": "shoal-tls", "tokens": "shoal-tokens"}
    assert args.tls_cert.startswith(mounts["tls"] + "/")
    assert args.api_tokens.startswith(mounts["tokens"] + "/")
    pdb = docs["PodDisruptionBudget", "shoal"]["spec"]
    assert pdb["selector"]["matchLabels"] == sts["selector"]["matchLabels"]


def test_a_template_action_the_renderer_does_not_know_fails() -> None:
    with pytest.raises(AssertionError, match="not one this test renders"):
        render('x: {{ include "shoal.labels" . }}', {})


def test_the_container_build_installs_the_wheel() -> None:
    text = (ROOT / "deploy" / "Containerfile").read_text()
    assert "python -m build --wheel" in text
    assert re.search(r"pip install [^\n]*shoal-\*\.whl", text)
    assert 'ENTRYPOINT ["shoal"]' in text
    assert "USER 10001" in text
