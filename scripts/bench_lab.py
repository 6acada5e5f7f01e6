"""Throughput through hive-vpc0 with real packets: iperf3 between two lab VMs on one node with
the base program, then with 1,000 security groups x 20 rules installed, and the same pair of
namespaces joined by a bare veth. Run by scripts/bench-lab (which builds the binaries and the
venv); not part of CI. Prints a table and writes JSON to $HIVE_BENCH_JSON when set.

All traffic stays inside namespaces the lab (or this script) made.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import boto3
from botocore.config import Config

CLI = os.environ["HIVE_CLI"]
LAB = os.environ.get("HIVE_BENCH_LAB", "bnch")
SECONDS = int(os.environ.get("HIVE_BENCH_SECONDS", "5"))
RUNS = int(os.environ.get("HIVE_BENCH_RUNS", "3"))
GROUPS = int(os.environ.get("HIVE_BENCH_GROUPS", "1000"))
RULES = int(os.environ.get("HIVE_BENCH_RULES", "20"))


def run(*args, check=True, capture=True):
    p = subprocess.run(args, check=False, text=True, capture_output=capture)
    if check and p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def lab(*args):
    return json.loads(run(CLI, "--output", "json", "lab", *args, "--name", LAB).stdout)


def iperf(client_ns, server_ns, server_ip):
    """Median Gbit/s over RUNS runs of SECONDS each, client -> server, one TCP stream."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", server_ip],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results = []
    try:
        for i in range(RUNS):
            if i:
                server = subprocess.Popen(
                    ["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", server_ip],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            time.sleep(0.3)
            out = run("ip", "netns", "exec", client_ns, "iperf3", "-c", server_ip,
                      "-t", str(SECONDS), "-J").stdout
            bps = json.loads(out)["end"]["sum_received"]["bits_per_second"]
            results.append(bps / 1e9)
            server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
    return statistics.median(results), results


def switch_flows(rundir):
    env = dict(os.environ, OVS_RUNDIR=rundir)
    p = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-aggregate", "hive-vpc0"], env=env,
                       text=True, capture_output=True, check=True)
    for word in p.stdout.split():
        if word.startswith("flow_count="):
            return int(word.split("=", 1)[1])
    raise SystemExit(f"no flow_count in {p.stdout!r}")


def main():
    tmp = tempfile.mkdtemp(prefix="hive-bench-")
    up = json.loads(run(CLI, "--output", "json", "lab", "up", "--nodes", "1", "--name", LAB,
                        "--dir", os.path.join(tmp, "lab")).stdout)
    try:
        bench(up, tmp)
    finally:
        run(CLI, "lab", "down", "--name", LAB, check=False)


def bench(up, tmp):
    endpoint = up["nodes"][0]["endpoint"]
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = up["credentials_file"]
    session = boto3.session.Session(profile_name="hive-admin", region_name="us-east-1")
    ec2 = session.client("ec2", endpoint_url=endpoint,
                         config=Config(retries={"max_attempts": 10, "mode": "standard"}))
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(VpcId=vpc, GroupName="perf", Description="iperf")["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5201, "ToPort": 5201,
         "IpRanges": [{"CidrIp": "10.40.1.0/24"}]}])
    enis = [ec2.create_network_interface(SubnetId=subnet, Groups=[sg])["NetworkInterface"]
            for _ in range(2)]
    vms = [lab("vm", "create", "--eni", e["NetworkInterfaceId"], "--node", "1") for e in enis]
    client_ns, server_ns = vms[0]["namespace"], vms[1]["namespace"]
    server_ip = enis[1]["PrivateIpAddress"]
    rundir = up["nodes"][0]["ovs_rundir"]
    time.sleep(1.5)

    base_flows = switch_flows(rundir)
    base, base_runs = iperf(client_ns, server_ns, server_ip)

    started = time.time()
    for g in range(GROUPS):
        gid = ec2.create_security_group(VpcId=vpc, GroupName=f"bulk-{g}",
                                        Description="bench")["GroupId"]
        perms = []
        for r in range(RULES):
            port = 1024 + (g * RULES + r) % 60000
            if r % 4 == 0:
                perms.append({"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                              "UserIdGroupPairs": [{"GroupId": sg}]})
            elif r % 4 == 1:
                perms.append({"IpProtocol": "udp", "FromPort": port, "ToPort": port + 10,
                              "IpRanges": [{"CidrIp": f"10.{40 + g % 8}.{r}.0/24"}]})
            else:
                perms.append({"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                              "IpRanges": [{"CidrIp": f"10.{g % 200}.{r}.{g % 250}/32"}]})
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=perms)
    api_secs = time.time() - started
    # Wait for the switch to hold the whole program (flow count stops growing).
    last, stable_since = -1, time.time()
    deadline = time.time() + 300
    while time.time() < deadline:
        n = switch_flows(rundir)
        if n != last:
            last, stable_since = n, time.time()
        elif time.time() - stable_since > 5 and n > base_flows:
            break
        time.sleep(0.5)
    full_flows = last
    installed_secs = time.time() - started
    full, full_runs = iperf(client_ns, server_ns, server_ip)

    # The same pair of endpoints on a bare veth, no switch at all.
    a, b = f"hl{LAB}ba", f"hl{LAB}bb"
    run("ip", "netns", "add", a)
    run("ip", "netns", "add", b)
    try:
        run("ip", "link", "add", "eth0", "netns", a, "type", "veth", "peer", "name", "eth0",
            "netns", b)
        for ns, ip in ((a, "192.168.77.1"), (b, "192.168.77.2")):
            run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        bare, bare_runs = iperf(a, b, "192.168.77.2")
    finally:
        run("ip", "netns", "del", a, check=False)
        run("ip", "netns", "del", b, check=False)

    result = {
        "seconds_per_run": SECONDS,
        "runs": RUNS,
        "base": {"gbit_s": base, "runs": base_runs, "flows": base_flows},
        "full": {"gbit_s": full, "runs": full_runs, "flows": full_flows,
                 "groups": GROUPS, "rules_per_group": RULES,
                 "api_seconds": round(api_secs, 1),
                 "installed_after_seconds": round(installed_secs, 1)},
        "bare_veth": {"gbit_s": bare, "runs": bare_runs},
        "full_over_base": full / base,
        "cost_percent": (1 - full / base) * 100,
    }
    print(f"{'setup':<40} {'Gbit/s (median)':>16} {'flows':>8}")
    print(f"{'hive-vpc0, base program':<40} {base:>16.2f} {base_flows:>8}")
    print(f"{f'hive-vpc0, {GROUPS} groups x {RULES} rules':<40} {full:>16.2f} {full_flows:>8}")
    print(f"{'bare veth':<40} {bare:>16.2f} {'-':>8}")
    print(f"full/base = {full / base:.3f} (cost {result['cost_percent']:.1f}%; target < 10%)")
    print(f"{GROUPS * RULES} rules through the API in {api_secs:.1f} s; "
          f"on the switch after {installed_secs:.1f} s")
    if os.environ.get("HIVE_BENCH_JSON"):
        with open(os.environ["HIVE_BENCH_JSON"], "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("scripts/bench-lab needs root (network namespaces)")
    main()
