#!/usr/bin/env python3
"""Self-check of bench/benchlib.py (stdlib unittest, no servers needed):
the percentile rule, and every parser on sample lines written in the formats
the harnesses configure (NGINX error_log at warn, Levee's text log,
HAProxy's "show stat" CSV from the stats socket, wrk --latency with
bench/wrk_hist.lua, h2load with --log-file, Prometheus text, /proc/PID/stat
and bench/load/cputime.py's file); and bench/report.py's summary of
bench/run.sh's results (CPU per request, ratios, the policy stack's cost).

  python3 -m unittest discover -s bench -p 'test_*.py'
  python3 bench/test_benchlib.py
"""

import contextlib
import io
import math
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
import report  # noqa: E402


class Percentile(unittest.TestCase):
    def test_nearest_rank(self):
        v = list(range(1, 101))  # 1..100
        self.assertEqual(benchlib.percentile(v, 50), 50)
        self.assertEqual(benchlib.percentile(v, 99), 99)
        self.assertEqual(benchlib.percentile(v, 99.9), 100)
        self.assertEqual(benchlib.percentile(v, 100), 100)
        self.assertEqual(benchlib.percentile(v, 0), 1)
        # ceil(0.99 * 10) = 10th of 10; ceil(0.5 * 10) = 5th
        self.assertEqual(benchlib.percentile([10, 9, 8, 7, 6, 5, 4, 3, 2, 1], 99), 10)
        self.assertEqual(benchlib.percentile(range(1, 11), 50), 5)
        # a sample, never an interpolation
        self.assertEqual(benchlib.percentile([1.0, 2.0], 50), 1.0)
        self.assertEqual(benchlib.percentile([1.0, 2.0], 51), 2.0)

    def test_unsorted_input_is_not_modified(self):
        v = [3, 1, 2]
        self.assertEqual(benchlib.percentile(v, 50), 2)
        self.assertEqual(v, [3, 1, 2])

    def test_one_sample(self):
        for p in (0, 1, 50, 99, 99.9, 100):
            self.assertEqual(benchlib.percentile([0.25], p), 0.25)

    def test_empty(self):
        self.assertTrue(math.isnan(benchlib.percentile([], 99)))
        self.assertTrue(math.isnan(benchlib.percentile_hist([], 99)))
        self.assertTrue(math.isnan(benchlib.percentile_hist([(5, 0)], 99)))

    def test_ties(self):
        v = [1, 2, 2, 2, 2, 2, 2, 2, 2, 9]
        self.assertEqual(benchlib.percentile(v, 50), 2)
        self.assertEqual(benchlib.percentile(v, 90), 2)
        self.assertEqual(benchlib.percentile(v, 91), 9)
        self.assertEqual(benchlib.percentile([7] * 5, 99), 7)

    def test_hist_is_the_same_rule(self):
        pairs = [(3, 2), (1, 1), (2, 4), (10, 1)]
        expanded = [v for v, c in pairs for _ in range(c)]
        for p in (0, 1, 10, 12.5, 13, 50, 87.5, 88, 99, 100):
            self.assertEqual(benchlib.percentile_hist(pairs, p), benchlib.percentile(expanded, p), p)


class Tools(unittest.TestCase):
    WRK = """Running 3s test @ http://127.0.0.1:28000/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms  300.00us  12.50ms   90.00%
    Req/Sec    52.10k     1.20k   54.00k    80.00%
  Latency Distribution
     50%    1.15ms
     75%    1.30ms
     90%    1.45ms
     99%    2.10ms
  156300 requests in 3.00s, 20.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  52100.33
Transfer/sec:      6.71MB
"""

    def test_wrk(self):
        w = benchlib.parse_wrk(self.WRK)
        self.assertAlmostEqual(w["rps"], 52100.33)
        self.assertEqual(w["requests"], 156300)
        self.assertEqual(w["errors"], 7)
        self.assertEqual(benchlib.parse_wrk("garbage")["requests"], 0)
        self.assertAlmostEqual(w["wrk_pct"][99], 0.0021)
        self.assertAlmostEqual(w["wrk_pct"][50], 0.00115)
        self.assertAlmostEqual(benchlib.duration_s("850.00us"), 0.00085)
        self.assertAlmostEqual(benchlib.duration_s("2.00s"), 2.0)
        self.assertTrue(math.isnan(benchlib.duration_s("?")))

    def test_wrk_hist(self):
        pairs, complete = benchlib.parse_wrk_hist("1100 3\n1150 5\n2100 1\n20000 1\ncomplete\n")
        self.assertTrue(complete)
        self.assertEqual(len(pairs), 4)
        self.assertAlmostEqual(benchlib.percentile_hist(pairs, 50), 0.00115)
        self.assertAlmostEqual(benchlib.percentile_hist(pairs, 90), 0.0021)
        self.assertAlmostEqual(benchlib.percentile_hist(pairs, 99), 0.02)
        _, complete = benchlib.parse_wrk_hist("1100 3\nincomplete\n")
        self.assertFalse(complete)

    def test_h2load(self):
        text = """finished in 3.00s, 41234.50 req/s, 1.50MB/s
requests: 123703 total, 123703 started, 123703 done, 123700 succeeded, 3 failed, 2 errored, 1 timeout
status codes: 123700 2xx, 0 3xx, 0 4xx, 3 5xx
"""
        h = benchlib.parse_h2load(text)
        self.assertAlmostEqual(h["rps"], 41234.5)
        self.assertEqual(h["requests"], 123703)
        self.assertEqual(h["errors"], 9)
        lat = benchlib.parse_h2load_log(["1733280000123456\t200\t1520\n", "1733280000123999\t200\t980\n", "junk\n"])
        self.assertEqual(len(lat), 2)
        self.assertAlmostEqual(lat[0], 0.00152)
        self.assertAlmostEqual(benchlib.percentile(lat, 99), 0.00152)


class CpuTime(unittest.TestCase):
    # Fields 1-17 of a real /proc/PID/stat, but for the command name, which
    # may hold spaces and parentheses: utime 1234, stime 567.
    STAT = "4321 (a b) (c)) S 1 4321 4321 0 -1 4194560 1000 0 0 0 1234 567 0 0 20 0 3 0 100 1000000 200\n"

    def test_parse_proc_stat(self):
        self.assertEqual(benchlib.parse_proc_stat(self.STAT), (1234, 567))
        with open("/proc/self/stat") as f:
            u, s = benchlib.parse_proc_stat(f.read())
        self.assertGreaterEqual(u, 0)
        self.assertGreaterEqual(s, 0)

    def test_proc_cpu_sums_processes(self):
        hz = os.sysconf("SC_CLK_TCK")
        with tempfile.TemporaryDirectory() as d:
            for pid, (u, s) in {"10": (100, 50), "11": (300, 0)}.items():
                os.mkdir(os.path.join(d, pid))
                with open(os.path.join(d, pid, "stat"), "w") as f:
                    f.write(self.STAT.replace("1234 567", f"{u} {s}"))
            # 12 does not exist (a process that has gone): it counts 0.
            user, system = benchlib.proc_cpu([10, 11, 12], proc=d)
        self.assertAlmostEqual(user, 400 / hz)
        self.assertAlmostEqual(system, 50 / hz)
        self.assertEqual(benchlib.proc_cpu([]), (0.0, 0.0))

    def test_parse_cputime(self):
        c = benchlib.parse_cputime("1.500 1.000 0.500\npids 10,11 3.250 2.000 1.250\n")
        self.assertEqual(c["command"], (1.5, 1.0, 0.5))
        self.assertEqual(c["pids"], (3.25, 2.0, 1.25))
        c = benchlib.parse_cputime("1.500 1.000 0.500\n")
        self.assertEqual(c["command"], (1.5, 1.0, 0.5))
        self.assertIsNone(c["pids"])
        self.assertEqual(benchlib.parse_cputime(""), {"command": None, "pids": None})

    def test_cpu_us_per_request(self):
        self.assertAlmostEqual(benchlib.cpu_us_per_request(3.0, 150000), 20.0)
        self.assertTrue(math.isnan(benchlib.cpu_us_per_request(3.0, 0)))
        self.assertTrue(math.isnan(benchlib.cpu_us_per_request(float("nan"), 100)))

    def test_cputime_py_reads_the_given_pids(self):
        # A busy process, measured while cputime.py runs "sleep": the pids
        # line has its CPU, the first line the sleep's (about none).
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            with tempfile.TemporaryDirectory() as d:
                out = os.path.join(d, "x.cpu")
                code = subprocess.call(
                    [sys.executable, os.path.join(HERE, "load", "cputime.py"), "--pids", str(busy.pid), out, "sleep", "0.5"]
                )
                self.assertEqual(code, 0)
                with open(out) as f:
                    text = f.read()
        finally:
            busy.kill()
            busy.wait()
        c = benchlib.parse_cputime(text)
        self.assertLess(c["command"][0], 0.4)
        self.assertTrue(text.splitlines()[1].startswith(f"pids {busy.pid} "))
        self.assertGreater(c["pids"][0], 0)
        self.assertAlmostEqual(c["pids"][0], c["pids"][1] + c["pids"][2], places=2)
        self.assertTrue(math.isnan(report.proxy_cpu_s(None)))
        self.assertTrue(math.isnan(report.proxy_cpu_s("/nonexistent.cpu")))


class Report(unittest.TestCase):
    HEADER = "# scenario\ttarget\tround\trps\tp50_us\tp99_us\terrors\trequests\tcpu_s\n"

    def results(self, rows, header=HEADER):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        d = tmp.name
        path = os.path.join(d, "results.tsv")
        with open(path, "w") as f:
            f.write(header)
            for r in rows:
                f.write("\t".join(str(x) for x in r) + "\n")
        return path, d

    ROWS = [
        # scenario target round rps p50 p99 errors requests cpu_s
        ("a", "levee", 1, 40000.0, 1300.0, 3000.0, 0, 120000, 2.4),  # 20 us/req
        ("a", "levee", 2, 42000.0, 1300.0, 3200.0, 0, 126000, 2.772),  # 22 us/req
        ("a", "levee-policy", 1, 36000.0, 1400.0, 3300.0, 0, 108000, 2.592),  # 24
        ("a", "levee-policy", 2, 38000.0, 1400.0, 3500.0, 0, 114000, 2.964),  # 26
        ("a", "nginx", 1, 50000.0, 1000.0, 2500.0, 0, 150000, 2.25),  # 15
        ("a", "nginx", 2, 50000.0, 1000.0, 2500.0, 0, 150000, 2.55),  # 17
        ("a", "haproxy", 1, 48000.0, 1100.0, 3000.0, 0, 144000, 2.88),  # 20
        ("a", "haproxy", 2, 48000.0, 1100.0, 3000.0, 0, 144000, 2.88),  # 20
        ("a", "direct", 1, 100000.0, 300.0, 900.0, 0, 300000, "nan"),
        ("a", "direct", 2, 100000.0, 300.0, 900.0, 0, 300000, "nan"),
        ("c", "levee", 1, 30000.0, 9000.0, 20000.0, 0, 90000, "nan"),
        ("c", "nginx", 1, 25000.0, 9000.0, 25000.0, 0, 75000, "nan"),
    ]

    def test_cpu_per_request_median_of_rounds(self):
        path, _ = self.results(self.ROWS)
        rows = report.read_results(path)
        self.assertAlmostEqual(report.median_of(rows, "a", "levee", report.CPU_US), 21.0)
        self.assertAlmostEqual(report.median_of(rows, "a", "levee-policy", report.CPU_US), 25.0)
        self.assertAlmostEqual(report.median_of(rows, "a", "nginx", report.CPU_US), 16.0)
        self.assertTrue(math.isnan(report.median_of(rows, "a", "direct", report.CPU_US)))
        self.assertTrue(math.isnan(report.median_of(rows, "c", "levee", report.CPU_US)))
        self.assertAlmostEqual(report.median_of(rows, "a", "levee", report.RPS), 41000.0)

    def test_old_results_without_cpu(self):
        path, _ = self.results(
            [r[:7] for r in self.ROWS], "# scenario\ttarget\tround\trps\tp50_us\tp99_us\terrors\n"
        )
        rows = report.read_results(path)
        self.assertAlmostEqual(report.median_of(rows, "a", "levee", report.RPS), 41000.0)
        self.assertTrue(math.isnan(report.median_of(rows, "a", "levee", report.CPU_US)))
        # No CPU/req rows without CPU figures.
        self.assertEqual(
            [(l, m) for l, m, _ in report.ratio_rows(rows)],
            [
                ("a", "req/s"), ("a", "p99"),
                ("a, policy stack", "req/s"), ("a, policy stack", "p99"),
                ("c", "req/s"), ("c", "p99"),
            ],
        )

    def test_ratio_rows(self):
        path, _ = self.results(self.ROWS)
        got = {(l, m): v for l, m, v in report.ratio_rows(report.read_results(path))}
        # Levee/NGINX, Levee/HAProxy, Levee/direct, NGINX/direct, HAProxy/direct
        self.assertEqual(
            sorted(got),
            sorted(
                [
                    ("a", "req/s"), ("a", "p99"), ("a", "CPU/req"),
                    ("a, policy stack", "req/s"), ("a, policy stack", "p99"), ("a, policy stack", "CPU/req"),
                    ("c", "req/s"), ("c", "p99"),
                ]
            ),
        )
        v = got[("a", "req/s")]
        self.assertAlmostEqual(v[0], 41000 / 50000)
        self.assertAlmostEqual(v[1], 41000 / 48000)
        self.assertAlmostEqual(v[2], 0.41)
        self.assertAlmostEqual(v[3], 0.5)
        self.assertAlmostEqual(v[4], 0.48)
        v = got[("a, policy stack", "CPU/req")]
        self.assertAlmostEqual(v[0], 25 / 16)
        self.assertAlmostEqual(v[1], 25 / 20)
        self.assertTrue(all(math.isnan(x) for x in v[2:]))  # no CPU figure for direct
        v = got[("a, policy stack", "p99")]
        self.assertAlmostEqual(v[0], 3400 / 2500)
        self.assertTrue(math.isnan(got[("c", "req/s")][1]))  # no HAProxy row

    def test_table(self):
        path, d = self.results(self.ROWS + [("a2", "levee", 1, 45000.0, 1300.0, 3000.0, 0, 135000, 2.7)])
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            report.table(path, d)
        text = buf.getvalue()
        self.assertIn("| scenario | target | req/s (median) | CPU µs/req | p50 ms | p99 ms | rounds | errors |", text)
        self.assertIn("| Levee | 41,000 | 21.0 | 1.30 | 3.10 | 2 | 0 |", text)
        self.assertIn("| Levee, policy stack | 37,000 | 25.0 | 1.40 | 3.40 | 2 | 0 |", text)
        self.assertIn("| origin direct | 100,000 | – | 0.30 | 0.90 | 2 | 0 |", text)
        self.assertIn("| (a2) same as (a), two workers per proxy", text)
        self.assertIn("| a, policy stack | CPU/req | 1.56 | 1.25 | – | – | – |", text)
        # The policy stack against plain Levee: 37,000 / 41,000, 3,400 / 3,100, 25 / 21.
        self.assertIn("| a | 0.90 | 1.10 | 1.19 |", text)

    def test_policy_line(self):
        m = benchlib.parse_metrics(
            [
                'levee_retries_total{route="all"} 2',
                'levee_ratelimit_decisions_total{route="all",limit="per-client",result="allowed"} 120000',
                'levee_ratelimit_decisions_total{route="all",limit="per-client",result="limited"} 0',
                'levee_cluster_concurrency_limit{cluster="origin"} 87',
                'levee_slo_events_total{slo="bench-availability"} 120000',
                'levee_slo_events_total{slo="tier:core"} 120000',
                'levee_slo_bad_events_total{slo="bench-availability"} 1',
            ]
        )
        line = report.policy_line(m)
        self.assertIn("retries 2,", line)
        self.assertIn("rate-limited 0,", line)
        self.assertIn("rate limit allowed 120,000,", line)
        self.assertIn("concurrency limit 87,", line)
        self.assertIn("SLO events 120,000, SLO bad events 1", line)
        self.assertEqual(report.policy_line([]), "no metrics")


class Logs(unittest.TestCase):
    NGINX = [
        '2026/12/04 00:04:46 [error] 3792#3792: *22 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 127.0.0.1, server: , request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:29101/", host: "127.0.0.1:29000"\n',
        '2026/12/04 00:04:47 [warn] 3792#3792: *29 upstream server temporarily disabled while reading response header from upstream, client: 127.0.0.1, server: , request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:29101/", host: "127.0.0.1:29000"\n',
        '2026/12/04 00:04:48 [error] 3792#3792: *31 no live upstreams while connecting to upstream, client: 127.0.0.1, server: , request: "GET /work HTTP/1.1", upstream: "http://app/work", host: "127.0.0.1:30000"\n',
        '2026/12/04 00:04:49 [warn] 3792#3792: *40 limiting requests, excess: 10.500 by zone "per_tenant", client: 127.0.0.1, server: , request: "GET /work HTTP/1.1", host: "127.0.0.1:30000"\n',
        '2026/12/04 00:04:49 [warn] 3792#3792: *41 limiting connections by zone "conn_per_tenant", client: 127.0.0.1, server: , request: "GET /work HTTP/1.1", host: "127.0.0.1:30000"\n',
        "2026/12/04 00:04:50 [notice] 3791#3791: signal process started\n",
    ]

    def test_nginx_line(self):
        e = benchlib.parse_nginx_error_line(self.NGINX[1])
        self.assertEqual(e["level"], "warn")
        self.assertEqual(e["pid"], 3792)
        self.assertEqual(e["conn"], 29)
        self.assertTrue(e["message"].startswith("upstream server temporarily disabled"))
        e = benchlib.parse_nginx_error_line(self.NGINX[5])
        self.assertEqual((e["level"], e["conn"], e["message"]), ("notice", None, "signal process started"))
        self.assertIsNone(benchlib.parse_nginx_error_line("not a log line\n"))

    def test_nginx_counts(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "nginx.error.log")
            with open(path, "w") as f:
                f.writelines(self.NGINX + self.NGINX[2:3])
            c = benchlib.nginx_error_counts(
                path,
                [
                    ("no live upstreams", "nlu"),
                    ("temporarily disabled", "td"),
                    ("limiting requests", "lr"),
                    ("limiting connections", "lc"),
                ],
            )
            self.assertEqual(c, {"nlu": 2, "td": 1, "lr": 1, "lc": 1})
            self.assertEqual(benchlib.nginx_error_counts(os.path.join(d, "missing"), [("x", "x")]), {})

    def test_levee(self):
        warn = "2026-12-04T00:04:09.790270Z  WARN levee_proxy::cluster: outlier ejected cluster=app endpoint=127.0.0.1:29101\n"
        e = benchlib.parse_levee_log_line(warn)
        self.assertEqual((e["level"], e["target"]), ("WARN", "levee_proxy::cluster"))
        self.assertTrue(e["message"].startswith("outlier ejected"))
        err = "2026-12-04T00:04:10.000001Z ERROR levee_proxy::gateway: upstream request failed error=connection reset\n"
        self.assertTrue(benchlib.levee_log_is_problem(err))
        self.assertFalse(benchlib.levee_log_is_problem(warn))
        self.assertTrue(benchlib.levee_log_is_problem("thread 'tokio-runtime-worker' panicked at crates/x.rs:1:2:\n"))
        self.assertIsNone(benchlib.parse_levee_log_line("note: run with `RUST_BACKTRACE=1`\n"))


class HAProxyStat(unittest.TestCase):
    CSV = (
        "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown\n"
        "fe,FRONTEND,,,0,51,8192,58,1091244,1629416,0,0,1,,,,,OPEN,,,,,\n"
        "app,s1,0,0,0,49,,2756,150564,224536,,0,,0,0,1105,1105,UP,1,1,0,3,1\n"
        "app,s2,0,0,0,12,,2001,1,2,,0,,0,0,0,0,DOWN,1,1,0,0,0\n"
        "app,BACKEND,0,7,0,51,820,4757,1,2,0,0,,0,0,1105,1105,UP,2,2,0,,1\n"
        "\n"
    )

    def test_parse(self):
        rows = benchlib.parse_haproxy_stat(self.CSV)
        self.assertEqual(len(rows), 4)
        s1 = rows[1]
        self.assertEqual((s1["pxname"], s1["svname"], s1["status"]), ("app", "s1", "UP"))
        self.assertEqual((s1["wretr"], s1["wredis"], s1["chkdown"]), ("1105", "1105", "1"))
        self.assertEqual(rows[3]["qmax"], "7")
        self.assertEqual(benchlib.parse_haproxy_stat(""), [])
        self.assertEqual(benchlib.parse_haproxy_stat("Unknown command\n"), [])

    def test_file(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "haproxy.stat.csv")
            self.assertIsNone(benchlib.read_haproxy_stat_file(path))
            with open(path, "w") as f:
                f.write(self.CSV)
            self.assertEqual(len(benchlib.read_haproxy_stat_file(path)), 4)


class Metrics(unittest.TestCase):
    def test_prometheus(self):
        m = benchlib.parse_metrics(
            [
                "# HELP levee_retries_total Retries.",
                "# TYPE levee_retries_total counter",
                'levee_retries_total{cluster="app",reason="connect"} 3',
                'levee_retries_total{cluster="app",reason="timeout"} 4',
                'levee_ratelimit_decisions_total{route="app",result="allowed"} 1010',
                'levee_ratelimit_decisions_total{route="app",result="limited"} 990',
                "levee_redis_connected 1",
                "garbage line",
            ]
        )
        self.assertEqual(len(m), 5)
        self.assertEqual(benchlib.msum(m, "levee_retries_total"), 7)
        self.assertEqual(benchlib.msum(m, "levee_ratelimit_decisions_total", result="limited"), 990)
        self.assertEqual(benchlib.msum(m, "levee_redis_connected"), 1)
        self.assertEqual(benchlib.msum(m, "absent"), 0)


class Upstream(unittest.TestCase):
    def test_take_requests(self):
        class T:
            aborted = False

            def abort(self):
                self.aborted = True

        buf = bytearray(
            b"GET /a HTTP/1.1\r\nHost: x\r\nX-Bench-Id: 7\r\n\r\n"
            b"POST /b HTTP/1.1\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc"
            b"GET /c HTTP/1.0\r\n\r\n"
            b"GET /d HTTP/1.1\r\n"
        )
        t = T()
        got = list(benchlib.take_requests(buf, t))
        self.assertEqual([(p, c) for p, _, c in got], [(b"/a", False), (b"/b", True), (b"/c", True)])
        self.assertEqual(got[0][1][b"x-bench-id"], b"7")
        self.assertEqual(bytes(buf), b"GET /d HTTP/1.1\r\n")
        self.assertFalse(t.aborted)
        big = bytearray(b"GET / HTTP/1.1\r\n" + b"x" * (benchlib.MAX_HEAD + 1))
        self.assertEqual(list(benchlib.take_requests(big, t)), [])
        self.assertTrue(t.aborted)

    def test_schedule(self):
        s = benchlib.schedule(100, 2, "poisson", 1)
        self.assertEqual(s, benchlib.schedule(100, 2, "poisson", 1))
        self.assertTrue(all(0 <= a < b < 2 for a, b in zip(s, s[1:])))
        self.assertEqual(benchlib.schedule(4, 1, "uniform", 1), [0.0, 0.25, 0.5, 0.75])


if __name__ == "__main__":
    unittest.main()
