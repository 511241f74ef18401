#!/usr/bin/env python3
"""Self-check of the region drill's figures in bench/scenarios/report.py
(stdlib unittest, no servers needed): time to fail back from arrivals per
region, the shares, and the whole computation on a synthetic run directory.

  python3 -m unittest discover -s bench -p 'test_*.py'
  python3 bench/test_scenarios_report.py
"""

import importlib.util
import json
import math
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# bench/report.py is another module named "report": load this one by path.
_spec = importlib.util.spec_from_file_location("scenarios_report", os.path.join(HERE, "scenarios", "report.py"))
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)


def every(a, b, step):
    """Arrival times a, a + step, ... below b."""
    out, k = [], 0
    while a + k * step < b - 1e-12:
        out.append(a + k * step)
        k += 1
    return out


class FailbackTime(unittest.TestCase):
    def test_immediate(self):
        # The primary takes everything from the restore on.
        p = every(20.0, 30.0, 0.01)
        self.assertEqual(report.failback_time(p, [], 20.0, 30.0, 1.0), 0.0)
        self.assertEqual(report.failback_time(p, [], 20.0, 30.0, 0.1), 0.0)

    def test_switch_at_a_time(self):
        # Secondary until 23.35, primary after: the first whole passing
        # window starts at 24 (1 s windows) or 23.4 (0.1 s windows).
        s = every(20.0, 23.35, 0.01)
        p = every(23.35, 30.0, 0.01)
        self.assertAlmostEqual(report.failback_time(p, s, 20.0, 30.0, 1.0), 4.0)
        self.assertAlmostEqual(report.failback_time(p, s, 20.0, 30.0, 0.1), 3.4)

    def test_threshold_is_ninety_percent(self):
        # 9 primary to 1 secondary passes; 8 to 2 does not.
        p9 = [20.0 + i * 0.1 for i in range(100) if i % 10 != 0]
        s1 = [20.0 + i * 0.1 for i in range(100) if i % 10 == 0]
        self.assertEqual(report.failback_time(p9, s1, 20.0, 30.0, 1.0), 0.0)
        p8 = [20.0 + i * 0.1 for i in range(100) if i % 10 > 1]
        s2 = [20.0 + i * 0.1 for i in range(100) if i % 10 <= 1]
        self.assertIsNone(report.failback_time(p8, s2, 20.0, 30.0, 1.0))

    def test_a_relapse_restarts_the_count(self):
        # Primary at once, back to the secondary for [25, 26), then primary:
        # failed back for good at 26.
        p = every(20.0, 25.0, 0.01) + every(26.0, 30.0, 0.01)
        s = every(25.0, 26.0, 0.01)
        self.assertAlmostEqual(report.failback_time(p, s, 20.0, 30.0, 1.0), 6.0)

    def test_never(self):
        s = every(0.0, 30.0, 0.01)
        self.assertIsNone(report.failback_time([], s, 20.0, 30.0, 1.0))
        self.assertIsNone(report.failback_time([], [], 20.0, 30.0, 1.0))
        self.assertIsNone(report.failback_time([25.0], [], 20.0, 20.5, 1.0))  # no whole window

    def test_empty_windows_do_not_count(self):
        # Nothing arrives in [22, 24): neither passes nor fails.
        p = every(20.0, 22.0, 0.01) + every(24.0, 30.0, 0.01)
        self.assertEqual(report.failback_time(p, [], 20.0, 30.0, 1.0), 0.0)
        s = every(20.0, 22.0, 0.01)
        self.assertAlmostEqual(report.failback_time(p, s, 20.0, 30.0, 1.0), 4.0)

    def test_arrivals_before_the_heal_and_after_the_last_window_are_ignored(self):
        p = every(20.0, 30.0, 0.01)
        s = every(5.0, 20.0, 0.01) + [29.95]
        # The last whole 1 s window is [29, 30): 100 primary, 1 secondary.
        self.assertEqual(report.failback_time(p, s, 20.0, 30.0, 1.0), 0.0)
        # With end 29.5 the window [29, 30) is not whole and is not counted.
        self.assertEqual(report.failback_time(p, every(29.2, 29.5, 0.001), 20.0, 29.5, 1.0), 0.0)


class FailoverBurst(unittest.TestCase):
    def test_burst_from_the_kill(self):
        self.assertEqual(report.failover_burst([], 5.0), (0.0, 0))
        t, later = report.failover_burst([5.3, 5.0, 5.01], 5.0)
        self.assertAlmostEqual(t, 0.3)
        self.assertEqual(later, 0)
        # Chained: each within 1 s of the previous one.
        t, later = report.failover_burst([5.9, 6.8, 7.7], 5.0)
        self.assertAlmostEqual(t, 2.7)
        self.assertEqual(later, 0)

    def test_later_errors(self):
        # NGINX's retry of the dead region when fail_timeout ends.
        t, later = report.failover_burst([5.01, 15.9], 5.0)
        self.assertAlmostEqual(t, 0.01)
        self.assertEqual(later, 1)
        t, later = report.failover_burst([15.9], 5.0)
        self.assertEqual((t, later), (0.0, 1))


class RegionMetrics(unittest.TestCase):
    def test_shares_and_first_primary_request(self):
        # Primary in steady, secondary in the fault, primary from 22.5 on.
        p = every(0.0, 5.0, 0.01) + every(22.5, 30.0, 0.01)
        s = every(5.0, 22.5, 0.01)
        m = report.region_metrics(p, s, 5.0, 20.0, 30.0)
        self.assertAlmostEqual(m["failback_1s"], 3.0)
        self.assertAlmostEqual(m["failback_0.1s"], 2.5)
        self.assertEqual(m["secondary_share_steady"], 0.0)
        self.assertEqual(m["secondary_share_fault"], 1.0)
        self.assertAlmostEqual(m["secondary_share_healed"], 0.25)
        self.assertEqual(m["secondary_share_last2s"], 0.0)
        self.assertEqual(m["secondary_share_after_failback"], 0.0)
        self.assertAlmostEqual(m["primary_back_after"], 2.5)
        self.assertEqual(m["primary_in_fault"], 0)
        self.assertEqual(m["primary_share_per_second_after_heal"], [0.0, 0.0, 0.5] + [1.0] * 7)

    def test_no_failback(self):
        s = every(5.0, 30.0, 0.01)
        m = report.region_metrics(every(0.0, 5.0, 0.01), s, 5.0, 20.0, 30.0)
        self.assertIsNone(m["failback_1s"])
        self.assertTrue(math.isnan(m["secondary_share_after_failback"]))
        self.assertIsNone(m["primary_back_after"])
        self.assertEqual(m["secondary_share_last2s"], 1.0)


class RegionRun(unittest.TestCase):
    """compute() and the tables on a synthetic run directory: a proxy that
    fails 3 requests just after the kill and fails back 2.2 s after the
    restore."""

    def test_compute_and_markdown(self):
        with tempfile.TemporaryDirectory() as out:
            d = os.path.join(out, "raw", "region.levee.rr.r1")
            os.makedirs(d)
            t0 = 1000.0
            sched = every(0.0, 30.0, 0.01)
            n = len(sched)
            status = [200] * n
            err = [None] * n
            failed_at = [5.0, 5.01, 5.3]
            for i, x in enumerate(sched):
                if any(abs(x - f) < 1e-9 for f in failed_at):
                    status[i] = 503
            load = {
                "duration": 30.0,
                "t0": t0,
                "events": [{"label": "fault", "t_sent": 5.0}, {"label": "heal", "t_sent": 20.0}],
                "summary": {"connections_peak": 8},
                "t": sched,
                "latency": [0.001] * n,
                "status": status,
                "error": err,
                "lag": [0.0] * n,
            }
            up_p = [x for x in sched if x < 5.0 or x >= 22.2]
            up_s = [x for x in sched if 5.0 <= x < 22.2]
            eps = []
            for k in range(6):
                mine = (up_p if k < 3 else up_s)[k % 3 :: 3]
                eps.append({"arrivals": [t0 + x for x in mine], "ids": [], "health_arrivals": []})
            meta = {"proxy": "levee", "balancer": "rr", "scenario": "region", "round": 1, "rate": 100,
                    "primary": [0, 1, 2], "secondary": [3, 4, 5], "failback_delay": "0s"}
            for name, doc in (("meta.json", meta), ("load.json", load), ("upstream.json", {"endpoints": eps})):
                with open(os.path.join(d, name), "w") as f:
                    json.dump(doc, f)
            r = report.compute(d)
            self.assertEqual(r["fault"]["failed"], 3)
            self.assertAlmostEqual(r["ttz_fault"], 0.3)
            self.assertAlmostEqual(r["region"]["failover"], 0.3)
            self.assertEqual(r["region"]["later_failures"], 0)
            self.assertAlmostEqual(r["region"]["failback_1s"], 3.0)
            self.assertAlmostEqual(r["region"]["failback_0.1s"], 2.2)
            self.assertNotIn("faulty_in_fault", r)
            md = report.markdown(out)
            self.assertIn("(6) region drill", md)
            self.assertIn("| Levee | round_robin | 0.2% (3/1500) |", md)
            self.assertIn("| 0.30 s | 0 | 0.30 s | 3.0 s | 2.2 s | 0 |", md)
            self.assertIn("fail over 0.30 s (later errors 0, last 0.30 s); fail back 3.0 s (1 s), 2.2 s (0.1 s)", report.one_line(d))


if __name__ == "__main__":
    unittest.main()
