# The Python half of scripts/bench-reconcile (run with the test venv's
# python, which has moto[server] and boto3). Two commands:
#
#   moto PORT [indexed]
#       moto in server mode on 127.0.0.1:PORT with the testkit's shims
#       (crates/core/src/testkit/moto_shims.py: its ECS container instances
#       sized as a g5.12xlarge, so GPU tasks can be placed), behind
#       a WSGI middleware that counts every request by its X-Amz-Target
#       header (ECS, DynamoDB and CloudWatch Logs speak AWS JSON, which names
#       the operation there; others are counted by the service their
#       signature names) and adds up the time moto took to answer each.
#       GET /bench/counts returns {target: [calls, seconds]}; POST resets.
#       DynamoDB calls are served one at a time (moto's DynamoDB is not
#       thread-safe; see counting() below).
#       With `indexed`, moto's DescribeTasks finds the tasks asked through
#       a set instead of comparing every task it holds with every ARN asked
#       (and, failing that, every ARN asked with a substring search): the
#       same answer, without the emulator's quadratic lookup (1,000 tasks
#       held, 100 asked: 200,000 string comparisons a call).
#       Prints "ready" once it listens; exits when its parent does.
#
#   measure URL TOKEN MOTO N SECONDS
#       deploys N instances through paddock's API at URL (most Fargate CPU,
#       a tenth of them spot, a few GPU), waits until every one is RUNNING,
#       then reads /metrics and moto's counts, waits SECONDS, reads both
#       again and prints one JSON object: the passes in between, their mean
#       time (the histogram's sum over its count), the slowest bucket
#       reached, and the calls to moto per pass by target with moto's own
#       time. Then one DescribeTasks of 100 of those tasks, timed directly
#       with boto3.
import contextlib
import json
import os
import sys
import threading
import time


def serve_moto(port, indexed):
    # The testkit's shims first, as its launcher applies them (the ECS
    # container instances' sizing among them).
    shims = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "core", "src", "testkit", "moto_shims.py")
    with open(shims) as f:
        exec(compile(f.read(), shims, "exec"), {})
    if indexed:
        index_describe_tasks()
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()
    dynamodb = threading.Lock()
    nolock = contextlib.nullcontext()
    counts = {}

    def target_of(environ):
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target:
            return target
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if "Credential=" in auth:
            # Credential=KEY/DATE/REGION/SERVICE/aws4_request
            scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
            if len(scope) >= 4:
                return scope[3] + " (query protocol)"
        return "unsigned " + environ.get("PATH_INFO", "")

    def counting(environ, start_response):
        if environ.get("PATH_INFO") == "/bench/counts":
            with lock:
                if environ["REQUEST_METHOD"] == "POST":
                    counts.clear()
                body = json.dumps(counts).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        target = target_of(environ)
        # moto's DynamoDB is not thread-safe: TransactWriteItems deep-copies
        # every table it writes (to roll back), and a write to the same table
        # from another thread meanwhile fails it with "dictionary changed
        # size during iteration" (an HTML 500). Its calls are served one at a
        # time; the time counted is moto's own, from after the wait.
        serial = dynamodb if target.startswith("DynamoDB_") else nolock
        with serial:
            started = time.perf_counter()
            out = app(environ, start_response)
            try:
                body = list(out)
            finally:
                if hasattr(out, "close"):
                    out.close()
            took = time.perf_counter() - started
        with lock:
            c = counts.setdefault(target, [0, 0.0])
            c[0] += 1
            c[1] += took
        return body

    server = make_server("127.0.0.1", port, counting, True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)
    server.shutdown()


def index_describe_tasks():
    import moto.ecs.models as ecs_models
    from moto.ecs.exceptions import InvalidParameterException

    def describe_tasks(self, cluster_str, tasks):
        self._get_cluster(cluster_str)
        if not tasks:
            raise InvalidParameterException("Tasks cannot be empty.")
        arns = set(tasks)
        ids = {t.split("/")[-1] for t in tasks}
        response = []
        for cluster_tasks in self.tasks.values():
            for task_arn, task in cluster_tasks.items():
                if task_arn in arns or task_arn.split("/")[-1] in ids:
                    task.advance()
                    response.append(task)
        return response

    ecs_models.EC2ContainerServiceBackend.describe_tasks = describe_tasks


def measure(url, token, moto, n, seconds):
    import http.client
    import urllib.parse
    from concurrent.futures import ThreadPoolExecutor

    u = urllib.parse.urlparse(url)
    local = threading.local()

    def call(method, path, body=None, base=u, bearer=token):
        key = "c%d" % base.port
        conn = getattr(local, key, None)
        if conn is None:
            conn = http.client.HTTPConnection(base.hostname, base.port, timeout=120)
            setattr(local, key, conn)
        headers = {"Authorization": "Bearer " + bearer} if bearer else {}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            payload = r.read()
        except (http.client.HTTPException, OSError):
            setattr(local, key, None)
            raise
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {payload[:300]!r}")
        return payload

    m = urllib.parse.urlparse(moto)

    def counts(reset=False):
        return json.loads(call("POST" if reset else "GET", "/bench/counts", base=m, bearer=None))

    def log(*a):
        print("[bench-reconcile]", *a, file=sys.stderr, flush=True)

    # The mix: one in 100 on a GPU (g5.xlarge, on the EC2 capacity
    # provider; half of them spot), one in ten Fargate Spot, the rest Fargate.
    def body(k):
        b = {"model_name": "gemma3:270m", "idle_timeout_minutes": 0}
        if k % 100 == 99:
            b["instance_type"] = "g5.xlarge"
            if k % 200 == 199:
                b["spot"] = True
        else:
            b["fargate_resources"] = {"cpu": 256, "memory": 1024}
            if k % 10 == 5:
                b["spot"] = True
        return b

    kinds = {"fargate": 0, "fargate spot": 0, "gpu": 0, "gpu spot": 0}
    for k in range(n):
        b = body(k)
        kind = ("gpu" if "instance_type" in b else "fargate") + (" spot" if b.get("spot") else "")
        kinds[kind] += 1
    counts(reset=True)
    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda k: json.loads(call("POST", "/api/models/deploy", body(k)))["instance_id"], range(n)))
    deployed = time.monotonic() - t0
    log(f"{n} deploys accepted in {deployed:.1f} s ({kinds}); waiting for RUNNING")
    ids = set(ids)
    deadline = time.monotonic() + 600
    last = None
    while True:
        insts = [i for i in json.loads(call("GET", "/api/instances?all=true"))["instances"]
                 if i["instance_id"] in ids]
        by = {}
        for i in insts:
            by[i["status"]] = by.get(i["status"], 0) + 1
        if by != last:
            log(f"  {time.monotonic() - t0:6.1f} s: {by}")
            last = by
        if by.get("RUNNING", 0) == n:
            break
        if by.get("FAILED"):
            bad = next(i for i in insts if i["status"] == "FAILED")
            sys.exit(f"an instance FAILED: {bad.get('status_reason')}")
        if time.monotonic() > deadline:
            sys.exit(f"not all RUNNING after 600 s: {by}")
        time.sleep(2)
    to_running = time.monotonic() - t0
    deploy_counts = counts()

    def metrics():
        text = call("GET", "/metrics").decode()
        h = {"sum": 0.0, "count": 0, "buckets": []}
        for line in text.splitlines():
            if not line.startswith("paddock_reconcile_pass_duration_seconds"):
                continue
            name, value = line.rsplit(" ", 1)
            if name.endswith("_sum"):
                h["sum"] = float(value)
            elif name.endswith("_count"):
                h["count"] = int(float(value))
            elif "_bucket" in name:
                le = name.split('le="', 1)[1].split('"', 1)[0]
                h["buckets"].append((float(le), int(float(value))))
        return h

    # Steady state: a few passes to settle (the last STARTING -> RUNNING
    # writes, the deploys' wakes), then the window.
    time.sleep(3)
    h0 = metrics()
    c0 = counts()
    time.sleep(seconds)
    h1 = metrics()
    c1 = counts()
    passes = h1["count"] - h0["count"]
    if passes <= 0:
        sys.exit("no reconcile pass in the window (is paddock_reconcile_pass_duration_seconds on /metrics?)")
    mean = (h1["sum"] - h0["sum"]) / passes
    b0 = dict(h0["buckets"])
    slowest = None
    for le, v in sorted(h1["buckets"]):
        if v - b0.get(le, 0) >= passes:
            slowest = le
            break
    per_pass = {}
    for target, (calls, secs) in c1.items():
        dc = calls - c0.get(target, [0, 0.0])[0]
        ds = secs - c0.get(target, [0, 0.0])[1]
        if dc:
            per_pass[target] = {"calls": dc / passes, "moto_ms": ds / passes * 1000,
                                "moto_ms_per_call": ds / dc * 1000}

    # One DescribeTasks of 100 of the deployment's tasks, from boto3: the
    # emulator's own time for the call the driver makes ten times a pass.
    import boto3
    ecs = boto3.client("ecs", endpoint_url=moto, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    cluster = os.environ["PADDOCK_DRIVER__CLUSTER"]
    arns = []
    for page in ecs.get_paginator("list_tasks").paginate(cluster=cluster, desiredStatus="RUNNING"):
        arns += page["taskArns"]
    direct = []
    for _ in range(5):
        t = time.perf_counter()
        got = ecs.describe_tasks(cluster=cluster, tasks=arns[:100])["tasks"]
        direct.append((time.perf_counter() - t) * 1000)
    print(json.dumps({
        "instances": n, "kinds": kinds, "tasks_in_moto": len(arns), "described": len(got),
        "deploy_accept_s": deployed, "deploy_to_running_s": to_running,
        "deploy_calls": {k: v[0] for k, v in deploy_counts.items()},
        "window_s": seconds, "passes": passes, "mean_pass_ms": mean * 1000,
        "slowest_bucket_s": slowest, "per_pass": per_pass,
        "describe_100_direct_ms": sorted(direct)[len(direct) // 2],
    }))


if __name__ == "__main__":
    if sys.argv[1] == "moto":
        serve_moto(int(sys.argv[2]), sys.argv[3:4] == ["indexed"])
    elif sys.argv[1] == "measure":
        measure(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6]))
    else:
        sys.exit("usage: bench-reconcile.py moto PORT [indexed] | measure URL TOKEN MOTO N SECONDS")
