#!/usr/bin/env python3
"""Keeps the deployment files honest without a Docker engine: parses
compose/docker-compose.yml and checks its services, ports and variables
against env.example, nginx/nginx.conf, the Dockerfile and what the binary
itself accepts (`ssegate --help`). Prints TAP."""
import ipaddress
import os
import re
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(TOP, "ssegate")


def read(rel):
    with open(os.path.join(TOP, rel), encoding="utf-8") as f:
        return f.read()


def env_example():
    out = {}
    for line in read("env.example").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k] = v
    return out


def compose():
    return yaml.safe_load(read("compose/docker-compose.yml"))


def nginx_conf():
    # Comments out: only directives count.
    return "\n".join(l.split("#")[0] for l in read("nginx/nginx.conf").splitlines())


def size_bytes(v):
    """"320mb" (Redis) or "512m" (Compose) in bytes."""
    m = re.fullmatch(r"(\d+)([kmg])b?", v.lower())
    assert m is not None, "a size: %r" % v
    return int(m.group(1)) << {"k": 10, "m": 20, "g": 30}[m.group(2)]


def test_compose_services():
    c = compose()
    svcs = {k: v for k, v in c["services"].items() if not v.get("profiles")}
    assert set(svcs) == {"redis", "backend-1", "backend-2", "nginx"}, sorted(svcs)
    r = svcs["redis"]
    assert "--appendonly" in r["command"] and r["command"][r["command"].index("--appendonly") + 1] == "yes", \
        "redis keeps an AOF"
    assert "redis-cli" in " ".join(r["healthcheck"]["test"]), "redis health check"
    assert any(v.endswith(":/data") for v in r["volumes"]), "redis data on a volume"
    # Full, Redis refuses writes (503) rather than evicting history or
    # accounts, and it is full well below the container's limit.
    cmd = r["command"]
    assert "--maxmemory-policy" in cmd and cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction", \
        "redis evicts nothing"
    assert "--maxmemory" in cmd, "redis has a maxmemory"
    maxmem, limit = size_bytes(cmd[cmd.index("--maxmemory") + 1]), size_bytes(r["mem_limit"])
    assert maxmem <= 0.7 * limit, "maxmemory %d leaves room below mem_limit %d (AOF rewrite)" \
        % (maxmem, limit)
    caps = [svcs[n]["environment"].get("HISTORY_MAXLEN") for n in ("backend-1", "backend-2")]
    assert caps[0] == caps[1], "HISTORY_MAXLEN equal on both backends: %s" % caps
    for name in ("backend-1", "backend-2"):
        b = svcs[name]
        env = b["environment"]
        assert env["SERVER_ID"] == name, (name, env)
        # "redis" unless the sentinel profile's SSEGATE_REDIS_HOST empties it.
        assert env["REDIS_HOST"] == "${SSEGATE_REDIS_HOST-redis}", env
        assert env["REDIS_SENTINELS"] == "${SSEGATE_REDIS_SENTINELS-}", env
        assert b["env_file"] == "../env.example", "env.example is the .env"
        assert "/health" in " ".join(b["healthcheck"]["test"]), "health check on /health"
        assert b["restart"] in ("always", "unless-stopped", "on-failure"), b["restart"]
        assert b.get("mem_limit"), "memory limit"
        assert b["build"]["dockerfile"] == "Dockerfile" and b["build"]["context"] == ".."
        assert b["depends_on"]["redis"]["condition"] == "service_healthy"
    n = svcs["nginx"]
    assert "80:80" in n["ports"], n["ports"]
    # The backends trust nginx, and only nginx, for X-Forwarded-For.
    nginx_ip = n["networks"]["default"]["ipv4_address"]
    subnet = c["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(nginx_ip) in ipaddress.ip_network(subnet), (nginx_ip, subnet)
    for name in ("backend-1", "backend-2"):
        assert svcs[name]["environment"]["TRUSTED_PROXIES"] == nginx_ip + "/32", \
            svcs[name]["environment"]
    assert "../nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in n["volumes"], n["volumes"]
    for name in ("backend-1", "backend-2"):
        assert n["depends_on"][name]["condition"] == "service_healthy"


def test_compose_sentinel_profile():
    """docker compose --profile sentinel: two replicas of redis and three
    sentinels watching it; the backends' settings name them as the file's
    head comment says."""
    c = compose()
    prof = {k: v for k, v in c["services"].items() if "sentinel" in v.get("profiles", [])}
    assert set(prof) == {"redis-replica-1", "redis-replica-2", "sentinel-1", "sentinel-2",
                         "sentinel-3"}, sorted(prof)
    for name in ("redis-replica-1", "redis-replica-2"):
        cmd = prof[name]["command"]
        assert cmd[cmd.index("--replicaof") + 1:cmd.index("--replicaof") + 3] == ["redis", "6379"]
    head = read("compose/docker-compose.yml").split("\nname:")[0]
    m = re.search(r"SSEGATE_REDIS_SENTINELS=(\S+)", head)
    assert m, "the head comment shows how to start the profile"
    for item in m.group(1).split(","):
        host, port = item.split(":")
        assert host in prof and port == "26379", item
        script = "\n".join(prof[host]["command"])
        assert "port 26379" in script and "sentinel monitor mymaster redis 6379 2" in script
        assert "announce-hostnames yes" not in script, "clients get IPs, never a DNS wait"
    assert "SSEGATE_REDIS_HOST= SSEGATE_REDIS_PORT=" in head, "REDIS_HOST/PORT emptied"
    # What the binary makes of those settings: accepted, once both are empty.
    ex = env_example()
    env = dict(os.environ, **ex)
    env.update(REDIS_HOST="", REDIS_PORT="", REDIS_SENTINELS=m.group(1))
    r = subprocess.run([BIN, "--version"], env=env, capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr


def test_env_example_matches_binary():
    ex = env_example()
    helptext = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=10).stdout
    # "  --flag  VARIABLE  meaning": the second column.
    accepted = {l.split()[1] for l in helptext.splitlines()
                if l.strip().startswith("--") and re.match(r"^[A-Z][A-Z0-9_]+$", l.split()[1])}
    missing = accepted - set(ex)
    extra = set(ex) - accepted
    assert not missing, "variables ssegate accepts but env.example lacks: %s" % sorted(missing)
    assert not extra, "variables in env.example that ssegate does not know: %s" % sorted(extra)
    # Every value in env.example must be valid: the environment is parsed
    # before flags, so --version exits 2 if any value is rejected.
    env = dict(os.environ, **{k: v for k, v in ex.items()})
    r = subprocess.run([BIN, "--version"], env=env, capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr


def test_nginx_matches_compose():
    conf = nginx_conf()
    c = compose()
    ex = env_example()
    for name in ("backend-1", "backend-2"):
        port = c["services"][name]["environment"].get("PORT", ex["PORT"])
        assert re.search(r"server\s+%s:%s\b" % (name, port), conf), "upstream %s:%s" % (name, port)
    assert re.search(r"listen\s+80;", conf), "nginx listens on 80 as compose publishes"
    for directive in (r"proxy_http_version\s+1\.1;", r'proxy_set_header\s+Connection\s+"";',
                      r"proxy_buffering\s+off;", r"proxy_cache\s+off;",
                      r"proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for;",
                      r"proxy_set_header\s+Last-Event-ID\s+\$http_last_event_id;",
                      r"proxy_next_upstream\s+error\s+timeout;"):
        assert re.search(directive, conf), "nginx.conf needs %s" % directive
    assert "non_idempotent" not in conf, "a POST that may have been applied must not be retried"
    m = re.search(r"proxy_read_timeout\s+(\d+)([smh]?);", conf)
    secs = int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    assert secs > 4 * int(ex["HEARTBEAT_SECS"]), "read timeout well above the heartbeat"


def test_nginx_native_render():
    with tempfile.TemporaryDirectory() as d:
        conf = subprocess.run([os.path.join(TOP, "scripts", "render-nginx"), d, "8080", "3001", "3002"],
                              capture_output=True, text=True, check=True).stdout
        assert "server 127.0.0.1:3001" in conf and "server 127.0.0.1:3002" in conf
        assert "listen 127.0.0.1:8080;" in conf
        # Everything but the marked lines is the shipped file.
        shipped = [l for l in read("nginx/nginx.conf").splitlines() if "# @native" not in l]
        rendered = conf.splitlines()
        assert all(l in rendered for l in shipped), "render-nginx changed an unmarked line"
        path = os.path.join(d, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        r = subprocess.run(["nginx", "-t", "-p", d, "-c", path], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_dockerfile():
    df = read("Dockerfile")
    froms = re.findall(r"^FROM\s+(\S+)", df, re.M)
    assert len(froms) == 2 and froms[1].endswith("-slim"), froms
    assert re.search(r"^USER\s+(?!root)\S+", df, re.M), "runs as a non-root user"
    assert "-dev" not in df.split("FROM")[2], "the runtime stage has no -dev packages"
    assert "HEALTHCHECK" in df


TESTS = [test_compose_services, test_compose_sentinel_profile, test_env_example_matches_binary, test_nginx_matches_compose,
         test_nginx_native_render, test_dockerfile]


if __name__ == "__main__":
    sys.exit(tap.run(TESTS))
