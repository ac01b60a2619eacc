#!/usr/bin/env python3
"""Writes the snmpsim recording of a 48-port access switch with two uplinks.

The recording is committed (access-switch.snmprec); this script documents how it was made and
regenerates it. ifOperStatus, ifAdminStatus and dot1qPvid of every port use snmpsim's `writecache` variation,
so a test can `snmpset` them to simulate a port going down, being shut or changing VLAN.
"""
import sys

IF_PORTS = 48
UPLINKS = [(49, "Te1/1/1", "TenGigabitEthernet1/1/1", "uplink: dist1-b12 Te1/0/5"),
           (50, "Te1/1/2", "TenGigabitEthernet1/1/2", "uplink: dist2-b12 Te1/0/5")]
# Ports that are cabled to nothing when the recording starts (oper down, admin up).
DOWN_AT_START = {7, 19, 33}
# Ports an operator has shut.
ADMIN_DOWN = {47, 48}


def rows():
    out = []
    def add(oid, tag, value):
        out.append((tuple(int(p) for p in oid.split(".")), tag, value))

    add("1.3.6.1.2.1.1.1.0", "4", "CNaaS test access switch, 48x1G + 2x10G")
    add("1.3.6.1.2.1.1.2.0", "6", "1.3.6.1.4.1.9.1.2134")
    add("1.3.6.1.2.1.1.3.0", "67", "123456789")
    add("1.3.6.1.2.1.1.5.0", "4", "a-b12-01")
    add("1.3.6.1.2.1.1.6.0", "4", "Building 12, room 101")
    ports = []
    for i in range(1, IF_PORTS + 1):
        ports.append((i, f"Gi1/0/{i}", f"GigabitEthernet1/0/{i}", f"B12-R101-U{i:02d}", 1000))
    for idx, name, descr, alias in UPLINKS:
        ports.append((idx, name, descr, alias, 10000))
    add("1.3.6.1.2.1.2.1.0", "2", str(len(ports)))
    for idx, name, descr, alias, speed in ports:
        admin = 2 if idx in ADMIN_DOWN else 1
        oper = 2 if (idx in DOWN_AT_START or idx in ADMIN_DOWN) else 1
        base = "1.3.6.1.2.1.2.2.1"
        add(f"{base}.1.{idx}", "2", str(idx))
        add(f"{base}.2.{idx}", "4", descr)
        add(f"{base}.3.{idx}", "2", "6")
        add(f"{base}.4.{idx}", "2", "1500")
        add(f"{base}.5.{idx}", "66", str(min(speed * 1_000_000, 4294967295)))
        add(f"{base}.6.{idx}", "4x", f"0011220000{idx:02x}")
        add(f"{base}.7.{idx}", "2:writecache", f"value={admin}")
        add(f"{base}.8.{idx}", "2:writecache", f"value={oper}")
        add(f"{base}.9.{idx}", "67", str(4500 + idx))
        add(f"{base}.10.{idx}", "65", str(1000 * idx))
        add(f"{base}.13.{idx}", "65", "0")
        add(f"{base}.14.{idx}", "65", "0")
        add(f"{base}.16.{idx}", "65", str(2000 * idx))
        add(f"{base}.19.{idx}", "65", "0")
        add(f"{base}.20.{idx}", "65", "0")
        xbase = "1.3.6.1.2.1.31.1.1.1"
        add(f"{xbase}.1.{idx}", "4", name)
        add(f"{xbase}.6.{idx}", "70", str(10_000_000 * idx))
        add(f"{xbase}.10.{idx}", "70", str(20_000_000 * idx))
        add(f"{xbase}.15.{idx}", "66", str(speed))
        add(f"{xbase}.18.{idx}", "4", alias)
    # BRIDGE-MIB / Q-BRIDGE-MIB: bridge port 100+i is ifIndex i (so the mapping matters).
    # Access ports are in VLAN 10 (writecache, so a test can move one), uplinks carry PVID 1.
    for idx, *_ in ports:
        bp = 100 + idx
        add(f"1.3.6.1.2.1.17.1.4.1.2.{bp}", "2", str(idx))
        pvid = 1 if idx > IF_PORTS else 10
        add(f"1.3.6.1.2.1.17.7.1.4.5.1.1.{bp}", "66:writecache", f"value={pvid}")
    out.sort(key=lambda r: r[0])
    return out


def main():
    for oid, tag, value in rows():
        sys.stdout.write(f"{'.'.join(map(str, oid))}|{tag}|{value}\n")


if __name__ == "__main__":
    main()
