package discovery

import "golang.org/x/sys/unix"

// namespaceIdentity returns the inode of the network namespace mounted at
// path, or false while path is no namespace (missing, or the empty file a
// namespace will be mounted on).
func namespaceIdentity(path string) (uint64, bool) {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil || fs.Type != unix.NSFS_MAGIC {
		return 0, false
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, false
	}
	return st.Ino, true
}
