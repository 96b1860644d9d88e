package agentproto

// TopResult is the agent's answer to MsgTop: a ps-like table of the
// container's processes (the agent and kernel threads are left out).
type TopResult struct {
	Titles    []string   `json:"titles"`
	Processes [][]string `json:"processes"`
}

// GuestStats is the agent's answer to MsgStats: the guest's resource usage,
// read from its /proc. Counters are cumulative since the guest booted (the
// template's boot for a clone); the host computes rates from two samples.
type GuestStats struct {
	// TimeUnixNano is the guest's wall clock when the sample was taken.
	TimeUnixNano int64 `json:"timeUnixNano"`

	// CPU times in nanoseconds, summed over all CPUs (/proc/stat).
	CPUTotal  uint64 `json:"cpuTotal"`  // every state, idle included
	CPUBusy   uint64 `json:"cpuBusy"`   // every state but idle and iowait
	CPUUser   uint64 `json:"cpuUser"`   // user + nice
	CPUSystem uint64 `json:"cpuSystem"` // system + irq + softirq
	// PerCPUBusy is CPUBusy per CPU.
	PerCPUBusy []uint64 `json:"perCpuBusy,omitempty"`
	OnlineCPUs int      `json:"onlineCpus"`

	// Memory is /proc/meminfo in bytes (pages counts as given), by field
	// name: "MemTotal", "MemAvailable", "Cached", "AnonPages", ...
	Memory map[string]uint64 `json:"memory,omitempty"`

	// Disks are the guest's whole disks (/proc/diskstats).
	Disks []DiskStats `json:"disks,omitempty"`
	// Networks are the guest's interfaces but lo (/proc/net/dev).
	Networks []NetStats `json:"networks,omitempty"`

	// Pids counts the container's processes (not the agent, not kernel
	// threads).
	Pids int `json:"pids"`
}

// DiskStats is one disk's I/O counters.
type DiskStats struct {
	Name       string `json:"name"`
	Major      uint64 `json:"major"`
	Minor      uint64 `json:"minor"`
	Reads      uint64 `json:"reads"`      // completed read requests
	ReadBytes  uint64 `json:"readBytes"`  // sectors read * 512
	Writes     uint64 `json:"writes"`     // completed write requests
	WriteBytes uint64 `json:"writeBytes"` // sectors written * 512
}

// NetStats is one network interface's counters.
type NetStats struct {
	Name      string `json:"name"`
	RxBytes   uint64 `json:"rxBytes"`
	RxPackets uint64 `json:"rxPackets"`
	RxErrors  uint64 `json:"rxErrors"`
	RxDropped uint64 `json:"rxDropped"`
	TxBytes   uint64 `json:"txBytes"`
	TxPackets uint64 `json:"txPackets"`
	TxErrors  uint64 `json:"txErrors"`
	TxDropped uint64 `json:"txDropped"`
}
