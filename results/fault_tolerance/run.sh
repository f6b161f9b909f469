#!/bin/sh
# Regenerates the raw outputs of docs/fault-tolerance.md (run from the repository root with
# MASEP pointing at build-cpu/tools/masep). 2-core VM, no GPU: ~8 minutes.
set -e
M=${MASEP:-build-cpu/tools/masep}
D=results/fault_tolerance
FAULTS="--fault kind=gpu,gpu=2,step=8 --fault kind=gpu,gpu=13,step=16 --fault kind=nic,node=2,nic=0,step=24"

# Paper scenario: 2x KV redundancy, experts re-loaded from host (scenarios/examples/paper-faults.yaml).
$M sim scenarios/examples/paper-faults.yaml --timeline $D/paper-faults.csv --plot $D/paper-faults.png > $D/paper-faults.txt
$M sim scenarios/examples/paper-faults.yaml --json > $D/paper-faults.json
# The same faults with no KV mirror: the lost replica's sequences are re-prefilled.
$M sim paper --set fault_tolerance.on_kv_loss=re_prefill --set fault_tolerance.on_expert_loss=reload $FAULTS > $D/paper-reprefill.txt
# A fifth node of spares: standbys take over (KV shard from the mirror, experts from host).
$M sim paper --set topology.nodes=5 --set fault_tolerance.standby_gpus=4 --set fault_tolerance.kv_copies=2 $FAULTS > $D/paper-standby.txt
# The MoE GPU alone, with re-routing, and with two copies of every expert.
$M sim paper --set fault_tolerance.on_expert_loss=reroute --fault kind=gpu,gpu=13,step=16 > $D/paper-reroute.txt
$M sim paper --set plan.moe.expert_replicas=2 --fault kind=gpu,gpu=13,step=16 > $D/paper-expert-copies.txt
# Steady-state cost of the redundancy (no fault).
$M sim paper > $D/paper-steady-kv1.txt
$M sim paper --set fault_tolerance.kv_copies=2 > $D/paper-steady-kv2.txt
$M sim paper --set plan.moe.expert_replicas=2 > $D/paper-steady-experts2.txt
$M plan paper > $D/paper-plan-kv1.txt
$M plan paper --set fault_tolerance.kv_copies=2 > $D/paper-plan-kv2.txt

# Large deployment: 1,024 H100s (768 attention in 96 replicas of 8, 256 MoE GPUs), 12 steps.
L="scenarios/examples/large-1024gpu.yaml --steps 12"
LF="--fault kind=gpu,gpu=5,step=3 --fault kind=gpu,gpu=900,step=6 --fault kind=nic,node=50,nic=2,step=9"
$M sim $L --set fault_tolerance.kv_copies=2 --set plan.moe.expert_replicas=2 $LF --timeline $D/large-redundant.csv --plot $D/large-redundant.png > $D/large-redundant.txt 2> /dev/null
$M sim $L --set fault_tolerance.on_kv_loss=re_prefill --set fault_tolerance.on_expert_loss=reload $LF > $D/large-policies.txt 2> /dev/null
$M sim $L -q > $D/large-steady-plain.txt 2> /dev/null
$M sim $L -q --set fault_tolerance.kv_copies=2 --set plan.moe.expert_replicas=2 > $D/large-steady-redundant.txt 2> /dev/null
$M sim $L -q --set fault_tolerance.kv_copies=2 > $D/large-steady-kv2.txt 2> /dev/null
$M plan $L --set fault_tolerance.kv_copies=2 --set plan.moe.expert_replicas=2 > $D/large-plan-redundant.txt
$M plan $L > $D/large-plan-plain.txt
