"""Dataset identity and cards: a versioned id, author, license, description and reference scores in the
store's attributes (``rise.card``), rendered as a markdown card with everything else a consumer needs
(env, collecting policy, code version, returns, embeddings, statistics, checksums, history).

Identity rules (docs/sharing.md): an id is ``[namespace/]name-vN``. It names the store's trajectories
as they were when it was set: the card records the store's row/episode counts and a fingerprint of
its step and episode arrays' sha256 checksums (``content``). So

- setting an id on a store that has another is refused (``--force`` overrides), except a version bump
  of the same name after the data changed (``pong-random-v0`` -> ``pong-random-v1``);
- writing a card whose id already names other content (the store was appended to since) is refused:
  bump the version;
- a store derived from another (merge/split/filter/subset) carries no card, and may not take one of
  its sources' ids.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rise_data import __version__
from rise_data.options import ConfigError, param
from rise_data.store import Store, StoreError, open_store
from rise_data.store.checksums import compute_checksums, data_fingerprint
from rise_data.store.format import now_iso
from rise_data.store.lock import store_lock

ID_PATTERN = re.compile(
    r"(?:(?P<namespace>[A-Za-z0-9][A-Za-z0-9_.\-]*(?:/[A-Za-z0-9][A-Za-z0-9_.\-]*)*)/)?(?P<name>[A-Za-z0-9][A-Za-z0-9_.\-]*?)-v(?P<version>\d+)"
)


def parse_id(dataset_id: str) -> tuple[str | None, str, int]:
    """``"rise/pong-random-v0"`` -> ("rise", "pong-random", 0); raises ValueError on anything else."""
    m = ID_PATTERN.fullmatch(dataset_id or "")
    if not m:
        raise ConfigError(
            f"dataset id '{dataset_id}' is not NAME-vN (letters, digits, '_', '.', '-'; an optional "
            "namespace/ before), e.g. pong-random-v0"
        )
    return m["namespace"], m["name"], int(m["version"])


@dataclass(frozen=True)
class CardConfig:
    """What ``rise-data card`` was asked to set (saved in the store's history)."""

    store: str = param(help="Store directory, packed .zip or URL (read-only: print only).")
    id: str | None = param(None, "Versioned dataset id NAME-vN, e.g. pong-random-v0.")
    author: str | None = param(None, "Author(s) of the dataset.")
    license: str | None = param(None, "License, e.g. CC-BY-4.0.")
    description: str | None = param(None, "What the dataset is, in a few sentences.")
    reference_scores: dict = param(
        factory=dict, help='Reference scores by name, e.g. {"random": -20.7, "human": 14.6}.'
    )
    force: bool = param(False, "Allow renaming an id or re-using it for changed data.")

    @property
    def sets_anything(self) -> bool:
        return any(
            v not in (None, {}) for v in (self.id, self.author, self.license, self.description)
        ) or bool(self.reference_scores)


def git_commit() -> str | None:
    """The commit of the rise checkout, if it is one (the card's code version)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _data_checksums(store: Store) -> dict:
    """Checksums of the trajectories (step + episode arrays) covering every committed row: the recorded
    ones where current; the rest (embeddings included) are computed now, streaming, and recorded."""
    recorded = store.checksums
    stale = [
        n
        for n in store.checksum_names()
        if recorded.get(n, {}).get("rows") != store.checksum_rows(n)
        or recorded[n].get("created") != store.checksum_tag(n)
    ]
    if stale:
        store.record_checksums(compute_checksums(store, stale))
    current = store.checksums
    return {n: current[n] for n in store.checksum_names() if not n.startswith("embeddings/")}


def _source_ids(store: Store) -> set[str]:
    """Ids of the stores this one was derived from (history entries of merge/split/filter/subset)."""
    ids = set()
    for h in store.meta.get("history", []):
        for src in [h.get("source")] + list(h.get("sources") or []):
            if isinstance(src, dict) and src.get("id"):
                ids.add(src["id"])
    return ids


def parse_scores(items: list[str]) -> dict[str, float]:
    """``["random=-20.7", "human=14.6"]`` -> ``{"random": -20.7, "human": 14.6}`` (``--ref-score``)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ConfigError(f"--ref-score takes NAME=NUMBER, got '{item}'")
    return out


def card(config: CardConfig) -> dict:
    """The card of ``config.store`` (:func:`card_data`), after writing the fields ``config`` sets."""
    if config.sets_anything:
        set_card(config)
    elif config.force:
        raise ConfigError(
            "--force only applies when setting --id, --author, --license, --description or --ref-score"
        )
    return card_data(open_store(config.store))


def set_card(config: CardConfig) -> dict:
    """Write the card fields asked for, enforcing the identity rules; returns the new card."""
    open_store(config.store, mode="a")  # a writable store directory, before its lock is taken
    with store_lock(config.store, "card"):
        return _set_card(config)


def _set_card(config: CardConfig) -> dict:
    store = open_store(config.store, mode="a")
    old = dict(store.meta.get("card") or {})
    if config.id is not None:
        parse_id(config.id)
    fingerprint = data_fingerprint(_data_checksums(store))
    content = {"rows": store.rows, "episodes": store.num_episodes, "data_sha256": fingerprint}
    old_id, new_id = old.get("id"), config.id or old.get("id")
    changed = old.get("content") is not None and old["content"].get("data_sha256") != fingerprint
    if not config.force:
        if config.id and old_id and config.id != old_id:
            ons, oname, over = parse_id(old_id)
            nns, nname, nver = parse_id(config.id)
            bump = (ons, oname) == (nns, nname) and nver > over
            if not bump:
                raise StoreError(
                    f"{store.path} is already '{old_id}'; refusing to rename it to '{config.id}' (pass --force)"
                )
            if not changed:
                raise StoreError(
                    f"{store.path} still holds the data '{old_id}' names; a new version needs new data (or --force)"
                )
        if new_id and new_id == old_id and changed:
            _, name, version = parse_id(old_id)
            was = old["content"]
            raise StoreError(
                f"'{old_id}' names other data ({was['rows']} rows, {was['episodes']} episodes; now "
                f"{store.rows} rows, {store.num_episodes} episodes): bump the version with --id "
                f"{old_id.rsplit('-v', 1)[0]}-v{version + 1} (or --force)"
            )
        if new_id and new_id in _source_ids(store):
            raise StoreError(
                f"'{new_id}' is the id of a store {store.path} was derived from (other content); choose a new id"
            )
    card = dict(old)
    for key in ("id", "author", "license", "description"):
        value = getattr(config, key)
        if value is not None:
            card[key] = value
    if config.reference_scores:
        card["reference_scores"] = {**card.get("reference_scores", {}), **config.reference_scores}
    if card.get("id"):
        namespace, name, version = parse_id(card["id"])
        card.update(name=name, version=version, namespace=namespace)
    card["content"] = {**content, "time": now_iso()}
    card["code_version"] = {"rise": __version__, "git": git_commit()}
    card["updated"] = now_iso()
    store.write_meta(card=card)
    changes = {k: v for k, v in vars(config).items() if k not in ("store",) and v not in (None, {}, False)}
    store.log_write("card", {"store": config.store, **changes})
    return card


def card_data(store: Store) -> dict:
    """The card fields plus what the store itself says: env, policies, code versions, returns, embeddings."""
    import numpy as np

    card = dict(store.meta.get("card") or {})
    ep = store.episodes()
    history = store.meta.get("history", [])
    policies = []
    for h in history:
        p = h.get("policy")
        if h.get("command") == "collect" and p and p not in policies:
            policies.append(p)
    returns = ep["return"]
    ret = (
        {
            "mean": float(np.mean(returns)),
            "std": float(np.std(returns)),
            "min": float(np.min(returns)),
            "max": float(np.max(returns)),
        }
        if len(returns)
        else {}
    )
    content = card.get("content") or {}
    status = None
    if card.get("id") and (content.get("rows"), content.get("episodes")) != (store.rows, store.num_episodes):
        status = (
            f"the store changed since '{card['id']}' was assigned ({content.get('rows')} -> {store.rows} rows); "
            "bump the version with rise-data card STORE --id"
        )
    checks = store.checksums
    sealed = [n for n in store.checksum_names() if checks.get(n, {}).get("rows") == store.checksum_rows(n)]
    return {
        **card,
        "path": store.path,
        "format": f"{store.meta['format']} v{store.meta['format_version']}",
        "created": store.meta.get("created"),
        "env": store.env,
        "policies": policies,
        "rise_versions": sorted({h.get("rise_version") for h in history if h.get("rise_version")}),
        "rows": store.rows,
        "episodes": store.num_episodes,
        "steps": int(np.sum(ep["length"])),
        "frames": list(store.group["frame"].shape[1:]) if store.has_frames else None,
        "returns": ret,
        "embeddings": {
            n: {k: v for k, v in store.embedding_meta(n).items() if k not in ("config", "stats")}
            for n in store.embedding_names()
        },
        "stats": store.meta.get("stats"),
        "checksums": {
            "sealed": len(sealed),
            "arrays": len(store.checksum_names()),
            "time": (store.meta.get("checksums") or {}).get("time"),
        },
        "history": [{k: h.get(k) for k in ("command", "time", "rise_version")} for h in history],
        "identity_warning": status,
    }


def _fmt(x) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def render_card(data: dict) -> str:
    """A human-readable markdown card from :func:`card_data`."""
    title = data.get("id") or "(no id: set one with `rise-data card STORE --id NAME-v0`)"
    lines = [f"# {title}", ""]
    if data.get("description"):
        lines += [data["description"], ""]
    if data.get("identity_warning"):
        lines += [f"> **Warning:** {data['identity_warning']}", ""]
    lines += ["| field | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in _summary_rows(data)] + [""]
    lines += _embeddings_section(data) + _stats_section(data) + _integrity_section(data)
    return "\n".join(lines)


def _summary_rows(data: dict) -> list[tuple[str, str]]:
    """The card's field/value table: identity, env, policy, code, data, returns, format, content hash."""
    env = data["env"]
    kwargs = " ".join(f"{k}={v}" for k, v in env.get("kwargs", {}).items())
    policies = "; ".join(", ".join(f"{k}={v}" for k, v in p.items()) for p in data["policies"]) or "unknown"
    code = data.get("code_version") or {}
    code_s = (
        f"rise {code.get('rise')}" + (f" (git {code['git'][:12]})" if code.get("git") else "") if code else ""
    )
    writers = ", ".join(data["rise_versions"])
    ret = data["returns"]
    frames = (
        f", RGB frames {'x'.join(map(str, data['frames'][:2]))}" if data.get("frames") else ", no RGB frames"
    )
    ident = (
        f"`{data['id']}` (name `{data.get('name')}`, version {data.get('version')})"
        if data.get("id")
        else "-"
    )
    rows = [
        ("id", ident),
        ("author", data.get("author") or "-"),
        ("license", data.get("license") or "-"),
        ("environment", f"`{env['id']}` ({env.get('family') or env.get('kind')}) {kwargs}".strip()),
        ("collecting policy", policies),
        ("code version", (code_s + "; " if code_s else "") + f"written by rise {writers or '?'}"),
        (
            "data",
            f"{data['steps']} steps in {data['episodes']} episodes ({data['rows']} rows); agent obs "
            f"{'x'.join(map(str, env['obs_shape']))} gray{frames}",
        ),
        (
            "returns",
            f"mean {_fmt(ret['mean'])} ± {_fmt(ret['std'])}, min {_fmt(ret['min'])}, max {_fmt(ret['max'])}"
            if ret
            else "-",
        ),
        (
            "reference scores",
            ", ".join(f"{k}: {_fmt(v)}" for k, v in (data.get("reference_scores") or {}).items()) or "-",
        ),
        ("format", f"{data['format']}, created {data.get('created')}"),
    ]
    content = data.get("content") or {}
    if content:
        rows.append(
            (
                "content sha256",
                f"`{content['data_sha256']}` ({content['rows']} rows, {content['episodes']} episodes)",
            )
        )
    return rows


def _embeddings_section(data: dict) -> list[str]:
    lines = ["## Embeddings", ""]
    if not data["embeddings"]:
        return lines + ["none (add with `rise-data encode STORE --encoder NAME`)"]
    lines += [
        "| name | encoder | weights | layer | input | dim | dtype | rows done |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, m in data["embeddings"].items():
        enc = m.get("encoder") if isinstance(m.get("encoder"), dict) else {}  # an EncoderSpec record
        pre = enc.get("preprocessing") or {}
        res = pre.get("resolution")
        lines.append(
            f"| `{n}` | {enc.get('name')} | `{enc.get('weights_id')}` | {enc.get('output_layer')} | "
            f"{pre.get('source')} {pre.get('channels')} {'x'.join(map(str, res)) if res else 'native'} | "
            f"{enc.get('dim')} | {m.get('dtype')} | {m.get('rows_done')}/{data['rows']} |"
        )
    return lines


def _stats_section(data: dict) -> list[str]:
    lines = ["", "## Normalisation statistics", ""]
    stats = data.get("stats")
    if not stats:
        return lines + ["not computed (`rise-data stats STORE`)"]
    stale = "" if stats.get("rows") == data["rows"] else " (**stale**: the data changed since)"
    lines += [
        f"Over {stats['rows']} rows{stale}; per-dimension embedding statistics are in each embeddings array's attributes.",
        "",
        "| array | mean | std | min | max |",
        "|---|---|---|---|---|",
    ]
    for n in ("obs", "frame", "reward", "return", "length"):
        s = stats.get(n)
        if s and s.get("count"):
            lines.append(
                f"| {n} | {_fmt(s['mean'])} | {_fmt(s['std'])} | {_fmt(s['min'])} | {_fmt(s['max'])} |"
            )
    return lines


def _integrity_section(data: dict) -> list[str]:
    """Checksums, the store's history, and how to load it."""
    c = data["checksums"]
    lines = ["", "## Integrity", ""]
    lines.append(
        f"sha256 of {c['sealed']} of {c['arrays']} arrays cover all their rows (sealed {c['time']}); `rise-data check` verifies them."
        if c["sealed"]
        else "not sealed (`rise-data seal STORE`, or `rise-data pack`, records per-array sha256)"
    )
    lines += ["", "## History", "", "| # | command | time | rise |", "|---|---|---|---|"]
    for i, h in enumerate(data["history"]):
        lines.append(f"| {i} | {h['command']} | {h['time']} | {h['rise_version']} |")
    return lines + [
        "",
        "## Loading",
        "",
        "```python",
        "from rise_data.store import open_store",
        f'store = open_store("{data["path"]}")  # a directory, a packed .zip or an s3:// URL',
        "```",
        "",
    ]
