"""Names of the fixture hosts in tests/fixtures/hosts/, shared by the test modules."""

# Foundation fixtures (tests/test_checks.py, tests/test_facts.py)
LAPTOP = "001-hp-elitebook-840g10-i7-1370p-disk-swap"
TIGERLAKE = "002-tigerlake-i7-1165g7-intel-pstate-powersave"
OPTERON = "003-supermicro-h8qg6-opteron6134-per-cpu-cpufreq"
KVM = "004-kvm-guest-cloudstack-skylake-2vcpu"
OVS = "005-ovs-offload-compute-160x1g-hugepages"
H8QM8 = "006-supermicro-h8qm8-2048x2m-hugepages"
ZRAM = "007-kunpeng920-arm64-zram-swappiness100"
HYPERV = "008-hyperv-gen2-guest-rhcos-2vcpu"
BUILD = "build-machine-kvm"

# CPU topology fixtures (tests/test_cpu_*.py)
GUIDE = "cpu-i5-12600k-guide-constructed"
RAPTOR = "cpu-i7-1370p-hybrid-laptop"
GB10 = "cpu-gb10-arm-biglittle"
RYZEN = "cpu-ryzen9-7950x-2ccd"
EPYC = "cpu-epyc7451-2s-8numa"
CPU_OPTERON = "cpu-opteron6276-4s-8numa-cmt"
N100 = "cpu-n100-ecore-only"
CPU_KVM = "cpu-kvm-guest-2vcpu"
ARL_H = "cpu-arl-h-lowpower"
