package agentproto

import "time"

// File operations: the agent owns the container's file system, so docker cp,
// export, diff and commit go through it. See "File operations" in
// docs/AGENT_PROTOCOL.md.
//
// A data-carrying operation runs on a stream of its own (the host picks one
// at or above FileStreamBase, so it never collides with process streams).
// Guest -> host data travels in FrameStdout frames on that stream, host ->
// guest data in FrameStdin frames closed by FrameEOF; both directions are
// flow-controlled by credit (MsgCredit), so neither side's single reader
// ever blocks on a slow consumer.
const (
	// MsgMount (host -> guest, stream 0; Start carries RootDevice,
	// RootFSType, Entropy, TimeUnixNano) mounts the container's root and
	// runs nothing: the agent of a short-lived maintenance clone that
	// serves file operations on a stopped container. Reply: ok. Such an
	// agent powers the VM off when the host disconnects.
	MsgMount = "mount"
	// MsgStatPath (stream 0; File.Path) replies ok with File.Stat.
	MsgStatPath = "stat-path"
	// MsgArchiveGet (own stream; File.Path, File.Window) replies ok with
	// File.Stat, then sends a tar of the path (dockerd's archive rules),
	// then MsgStreamEnd.
	MsgArchiveGet = "archive-get"
	// MsgArchivePut (own stream; File.Path, NoOverwriteDirNonDir,
	// CopyUIDGID, User) replies ok with File.Window (the credit the agent
	// grants), then extracts the tar the host sends into the directory
	// Path; MsgStreamEnd when done.
	MsgArchivePut = "archive-put"
	// MsgExport (own stream; File.Window): ok, a tar of the whole root file
	// system (without the contents of /proc, /sys, /dev), MsgStreamEnd.
	MsgExport = "export"
	// MsgChanges (own stream; File.BaseSerial, File.Window): ok, then JSON
	// lines of Change comparing the root with the image's base disk (the
	// virtio disk whose serial is BaseSerial), MsgStreamEnd.
	MsgChanges = "changes"
	// MsgDiffLayer (own stream; File.BaseSerial, File.Window, File.Freeze):
	// ok, then an uncompressed OCI layer tar of those changes (whiteouts
	// for deletions), MsgStreamEnd. Freeze freezes the root file system
	// while the layer is read.
	MsgDiffLayer = "diff-layer"
	// MsgCredit (both ways, on the operation's stream; File.Credit): the
	// receiver of data consumed File.Credit more bytes; the sender may send
	// that much more.
	MsgCredit = "credit"
	// MsgCancel (host -> guest, on the operation's stream): stop the
	// operation (the host's client went away).
	MsgCancel = "cancel"
	// MsgStreamEnd (guest -> host, on the operation's stream): the
	// operation finished; Message is empty on success, else the error
	// (File.ErrCode its kind). Nothing more is sent on the stream.
	MsgStreamEnd = "end"
)

// FileStreamBase is the lowest stream number of file operations.
const FileStreamBase uint32 = 0x40000000

// DefaultFileWindow is the initial credit of a file operation's stream when
// the request names none.
const DefaultFileWindow = 4 << 20

// Error kinds in FileOp.ErrCode.
const (
	FileErrNotFound = "not-found" // the path does not exist
	FileErrInvalid  = "invalid"   // e.g. the extraction point is not a directory
)

// IsFileMsg reports whether a message type belongs to the file operations.
func IsFileMsg(t string) bool {
	switch t {
	case MsgMount, MsgStatPath, MsgArchiveGet, MsgArchivePut, MsgExport,
		MsgChanges, MsgDiffLayer, MsgCredit, MsgCancel, MsgStreamEnd:
		return true
	}
	return false
}

// FileOp carries the parameters and results of file operations (Msg.File).
type FileOp struct {
	// Path in the container ("/etc/passwd"; relative paths are taken from
	// "/"). A trailing "/" or "/." is significant, as with dockerd.
	Path string `json:"path,omitempty"`
	// NoOverwriteDirNonDir (archive-put) refuses to replace a directory
	// with a non-directory and vice versa.
	NoOverwriteDirNonDir bool `json:"noOverwriteDirNonDir,omitempty"`
	// CopyUIDGID (archive-put) chowns what is extracted to User (the
	// container's configured user, resolved in its /etc/passwd and
	// /etc/group) instead of keeping the tar's numeric owners. With an
	// empty User the tar's owners are kept, as dockerd does.
	CopyUIDGID bool   `json:"copyUidGid,omitempty"`
	User       string `json:"user,omitempty"`
	// BaseSerial (changes, diff-layer) is the virtio serial of the image's
	// read-only base disk hot-plugged into the VM.
	BaseSerial string `json:"baseSerial,omitempty"`
	// Freeze (diff-layer) freezes the root file system (FIFREEZE) while
	// the layer is read, so the container's writes wait.
	Freeze bool `json:"freeze,omitempty"`
	// Window: in a request, the credit the host grants for guest -> host
	// data; in the ok reply to archive-put, the credit the agent grants.
	Window int64 `json:"window,omitempty"`
	// Credit (MsgCredit) is the number of further bytes the peer may send.
	Credit int64 `json:"credit,omitempty"`
	// Stat is the path's metadata (stat-path and archive-get replies).
	Stat *PathStat `json:"stat,omitempty"`
	// ErrCode classifies an error reply or a failed MsgStreamEnd.
	ErrCode string `json:"errCode,omitempty"`
}

// PathStat is dockerd's container path stat (the X-Docker-Container-Path-Stat
// header): Mode is a Go os.FileMode; LinkTarget is the fully resolved
// target path of a symbolic link inside the container.
type PathStat struct {
	Name       string    `json:"name"`
	Size       int64     `json:"size"`
	Mode       uint32    `json:"mode"`
	Mtime      time.Time `json:"mtime"`
	LinkTarget string    `json:"linkTarget"`
}

// Change kinds, as dockerd's container changes.
const (
	ChangeModify = 0
	ChangeAdd    = 1
	ChangeDelete = 2
)

// Change is one entry of a changes walk (a JSON line on the stream).
type Change struct {
	Path string `json:"path"`
	Kind int    `json:"kind"`
}
