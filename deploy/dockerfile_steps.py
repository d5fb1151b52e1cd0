#!/usr/bin/env python3
"""Runs a Dockerfile's build steps in the machine it runs on, for machines with no container engine.

    python3 deploy/dockerfile_steps.py DOCKERFILE [--context DIR] [--dry-run]

Every stage runs, in order, in this one root: FROM checks that the base is this machine's Debian release, ARG and ENV
set the stage's variables (with Docker's $VAR / ${VAR} / ${VAR:-default} expansion), WORKDIR creates and enters a
folder, COPY copies from the context (honouring .dockerignore) or, with --from, a path an earlier stage made, and RUN
runs its command with the stage's SHELL (and, unlike Docker, the calling environment beneath the stage's variables:
proxies and certificate bundles of the machine reach pip and apt). CMD, ENTRYPOINT, LABEL, EXPOSE, VOLUME and USER only describe the image and
are listed. It is how the test suite and a fresh Debian root (../shared/tools/fresh-machine.sh) prove the steps of
deploy/*.Dockerfile; what it cannot prove (the base image's contents, layer isolation between stages) is written in
deploy/README.md. --dry-run parses and prints the steps without running them.
"""
import argparse
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys


class DockerfileError(Exception):
    pass


def logical_lines(text, path):
    """(line number, instruction line) with continuations joined and comments dropped."""
    out, buf, start = [], "", 0
    escape = "\\"
    for no, raw in enumerate(text.splitlines(), 1):
        m = re.match(r"#\s*escape\s*=\s*(\S)", raw)
        if m and not out and not buf:
            escape = m.group(1)
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped, as Docker does
        if not buf:
            start = no
        if stripped.endswith(escape):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        out.append((start, buf))
        buf = ""
    if buf:
        raise DockerfileError(f"{path}:{start}: the last instruction ends with a line continuation")
    return out


def expand(word, env, where):
    def sub(m):
        name = m.group(1) or m.group(2)
        default = m.group(4)
        value = env.get(name)
        if m.group(3) == ":-":
            return value if value else (default or "")
        if m.group(3) == ":+":
            return (default or "") if value else ""
        if value is None:
            return ""
        return value
    return re.sub(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-+])([^}]*))?\})", sub, word)


def json_or_shell(rest):
    rest = rest.strip()
    if rest.startswith("["):
        try:
            value = json.loads(rest)
            if isinstance(value, list) and all(isinstance(x, str) for x in value):
                return value, True
        except json.JSONDecodeError:
            pass
    return rest, False


def parse(path):
    with open(path, encoding="utf-8") as f:
        lines = logical_lines(f.read(), path)
    steps = []
    for no, line in lines:
        word, _, rest = line.partition(" ")
        steps.append((no, word.upper(), rest.strip()))
    if not steps or steps[0][1] not in ("FROM", "ARG"):
        raise DockerfileError(f"{path}: the first instruction must be FROM (or ARG before it)")
    return steps


def pattern_regex(pattern):
    """A .dockerignore pattern as Docker reads it: * and ? stop at /, ** crosses folders, a folder's match covers
    everything below it."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + "(?:/.*)?$")


def ignored(rel, patterns):
    hit = False
    for neg, pat in patterns:
        if pattern_regex(os.path.normpath(pat.rstrip("/"))).match(rel):
            hit = not neg
    return hit


def dockerignore(context):
    patterns = []
    path = os.path.join(context, ".dockerignore")
    if os.path.exists(path):
        for line in open(path, encoding="utf-8"):
            line = line.strip()
            if line and not line.startswith("#"):
                patterns.append((line.startswith("!"), line.lstrip("!").lstrip("/")))
    return patterns


def copy_tree(src, dst, context, patterns):
    """Copies src's files to dst; the list is taken first, so a dst inside src is not copied into itself."""
    dst_abs = os.path.abspath(dst)
    todo = []
    for root, dirs, files in os.walk(src):
        rel_root = os.path.relpath(root, context)
        for d in [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            dirs.remove(d)  # a link to a folder is copied as the link, as Docker copies it
            files.append(d)
        dirs[:] = [d for d in dirs if not ignored(os.path.normpath(os.path.join(rel_root, d)), patterns)
                   and os.path.abspath(os.path.join(root, d)) != dst_abs]
        for name in files:
            if not ignored(os.path.normpath(os.path.join(rel_root, name)), patterns):
                todo.append(os.path.join(root, name))
    for path in todo:
        target = os.path.join(dst, os.path.relpath(path, src))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(path, target, follow_symlinks=False)


class Runner:
    def __init__(self, dockerfile, context, dry_run):
        self.dockerfile, self.context, self.dry_run = dockerfile, os.path.abspath(context), dry_run
        self.patterns = dockerignore(self.context)
        self.global_args = {}
        self.stages = []

    def log(self, text):
        print(f"[dockerfile-steps] {text}", flush=True)

    def check_base(self, image, where):
        name, _, tag = image.partition(":")
        if name not in ("debian", "docker.io/library/debian"):
            raise DockerfileError(f"{where}: base image {image} is not Debian; only Debian bases run here")
        release = tag.split("-")[0] or "latest"
        try:
            have = open("/etc/debian_version", encoding="utf-8").read().strip()
        except OSError:
            have = "?"
        if not have.startswith(release + ".") and have != release and not self.dry_run:
            raise DockerfileError(f"{where}: base image {image} is Debian {release}; this machine is Debian {have}")

    def run(self):
        steps = parse(self.dockerfile)
        env, shell, workdir = {}, ["/bin/sh", "-c"], "/"
        stage = None
        base_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}  # Debian images' ENV
        for no, instr, rest in steps:
            where = f"{self.dockerfile}:{no}"
            if instr == "ARG" and stage is None:
                name, _, default = rest.partition("=")
                self.global_args[name] = default
                continue
            if instr == "FROM":
                parts = expand(rest, self.global_args, where).split()
                image = [p for p in parts if not p.startswith("--")][0]
                stage = parts[parts.index("AS") + 1] if "AS" in parts else (
                    parts[parts.index("as") + 1] if "as" in parts else str(len(self.stages)))
                self.check_base(image, where)
                self.stages.append(stage)
                env, shell, workdir = dict(base_env), ["/bin/sh", "-c"], "/"
                self.log(f"stage {stage} (FROM {image})")
                continue
            if instr == "ARG":
                name, eq, default = rest.partition("=")
                env[name] = expand(default.strip('"'), env, where) if eq else self.global_args.get(name, "")
            elif instr == "ENV":
                for token in shlex.split(rest):
                    if "=" not in token:
                        raise DockerfileError(f"{where}: ENV {token}: use the KEY=value form")
                    k, _, v = token.partition("=")
                    env[k] = expand(v, env, where)
            elif instr == "SHELL":
                value, is_json = json_or_shell(rest)
                if not is_json:
                    raise DockerfileError(f"{where}: SHELL takes a JSON array")
                shell = value
            elif instr == "WORKDIR":
                workdir = os.path.join(workdir, expand(rest, env, where))
                self.log(f"WORKDIR {workdir}")
                if not self.dry_run:
                    os.makedirs(workdir, exist_ok=True)
            elif instr in ("COPY", "ADD"):
                if instr == "ADD":
                    raise DockerfileError(f"{where}: ADD is not used here; COPY says what it does")
                args = [expand(a, env, where) for a in shlex.split(rest)]
                opts = [a for a in args if a.startswith("--")]
                paths = [a for a in args if not a.startswith("--")]
                src_stage = next((o.split("=", 1)[1] for o in opts if o.startswith("--from=")), None)
                if src_stage is not None and src_stage not in self.stages:
                    raise DockerfileError(f"{where}: COPY --from={src_stage}: no earlier stage of that name")
                *sources, dst = paths
                dst = os.path.join(workdir, dst)
                self.log(f"COPY {'--from=' + src_stage + ' ' if src_stage else ''}{' '.join(sources)} {dst}")
                if self.dry_run:
                    continue
                for s in sources:
                    src = s if src_stage else os.path.join(self.context, s)
                    if not os.path.exists(src):
                        raise DockerfileError(f"{where}: COPY source {s} does not exist"
                                              f"{' (stage ' + src_stage + ')' if src_stage else ''}")
                    if os.path.isdir(src):
                        if os.path.abspath(src) == os.path.abspath(dst):
                            continue
                        copy_tree(src, dst, self.context if not src_stage else src,
                                  self.patterns if not src_stage else [])
                    else:
                        target = os.path.join(dst, os.path.basename(s)) if dst.endswith("/") else dst
                        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
                        shutil.copy2(src, target)
            elif instr == "RUN":
                value, is_json = json_or_shell(rest)
                argv = value if is_json else shell + [value]
                self.log(f"RUN {value if not is_json else ' '.join(value)}")
                if self.dry_run:
                    continue
                full_env = dict(os.environ)
                full_env.update(env)
                r = subprocess.run(argv, cwd=workdir, env=full_env)
                if r.returncode != 0:
                    raise DockerfileError(f"{where}: RUN failed with exit status {r.returncode}")
            elif instr in ("CMD", "ENTRYPOINT", "LABEL", "EXPOSE", "VOLUME", "USER", "HEALTHCHECK", "STOPSIGNAL",
                           "ONBUILD"):
                self.log(f"{instr} {rest} (image metadata)")
            else:
                raise DockerfileError(f"{where}: unknown instruction {instr}")
        self.log(f"done: {len(self.stages)} stages ({', '.join(self.stages)})")
        return env


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dockerfile")
    ap.add_argument("--context", default=".")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    try:
        Runner(args.dockerfile, args.context, args.dry_run).run()
    except DockerfileError as e:
        print(f"dockerfile-steps: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
