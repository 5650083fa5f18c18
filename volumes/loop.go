package volumes

// Loop devices through their ioctls (golang.org/x/sys/unix), without
// losetup: LOOP_CTL_GET_FREE for a free device, LOOP_CONFIGURE to bind a
// file to it with autoclear, so the kernel releases the device when the
// last user (the mount) goes away.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	loopControl = "/dev/loop-control"
	loopMajor   = 7
	// loopAttempts bounds retries when another process takes the free
	// device between LOOP_CTL_GET_FREE and LOOP_CONFIGURE.
	loopAttempts = 32
)

// attachLoop binds img to a free loop device with autoclear. It returns the
// device's path and an open descriptor of it; the device stays bound while
// that descriptor is open or a mount uses it.
func attachLoop(img *os.File) (string, *os.File, error) {
	ctl, err := os.OpenFile(loopControl, os.O_RDWR, 0)
	if err != nil {
		return "", nil, fmt.Errorf("open %s: %w", loopControl, err)
	}
	defer ctl.Close()
	var lastErr error
	for range loopAttempts {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", nil, fmt.Errorf("find a free loop device: %w", err)
		}
		path := "/dev/loop" + strconv.Itoa(n)
		dev, err := openLoopDevice(path, n)
		if err != nil {
			return "", nil, err
		}
		err = configureLoop(dev, img)
		if err == nil {
			return path, dev, nil
		}
		dev.Close()
		if !errors.Is(err, unix.EBUSY) {
			return "", nil, fmt.Errorf("bind %s to %s: %w", img.Name(), path, err)
		}
		lastErr = err // another process took it first
	}
	return "", nil, fmt.Errorf("bind %s to a loop device: every free device was taken first: %w", img.Name(), lastErr)
}

// openLoopDevice opens /dev/loopN, making the node if /dev lacks it (a
// /dev that is not devtmpfs).
func openLoopDevice(path string, n int) (*os.File, error) {
	dev, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		if err := unix.Mknod(path, unix.S_IFBLK|0o600, int(unix.Mkdev(loopMajor, uint32(n)))); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("make %s: %w", path, err)
		}
		dev, err = os.OpenFile(path, os.O_RDWR, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return dev, nil
}

// configureLoop binds img to dev with autoclear: LOOP_CONFIGURE (Linux
// 5.8), or LOOP_SET_FD and LOOP_SET_STATUS64 on older kernels.
func configureLoop(dev, img *os.File) error {
	info := unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR}
	copy(info.File_name[:unix.LO_NAME_SIZE-1], img.Name())
	cfg := unix.LoopConfig{Fd: uint32(img.Fd()), Info: info}
	err := unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
		return err
	}
	if err := unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_SET_FD, int(img.Fd())); err != nil {
		return err
	}
	if err := unix.IoctlLoopSetStatus64(int(dev.Fd()), &info); err != nil {
		_ = unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_CLR_FD, 0)
		return err
	}
	return nil
}

// loopDevices lists the loop devices the kernel has (/sys/block/loopN).
func loopDevices() ([]string, error) {
	names, err := filepath.Glob("/sys/block/loop*")
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		base := filepath.Base(n)
		if _, err := strconv.Atoi(strings.TrimPrefix(base, "loop")); err == nil {
			out = append(out, "/dev/"+base)
		}
	}
	return out, nil
}

// loopBacking reports the device and inode of the file bound to the loop
// device at path; bound is false for a free device.
func loopBacking(path string) (dev, ino uint64, bound bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, 0, false, nil
		}
		return 0, 0, false, err
	}
	defer f.Close()
	info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
	if errors.Is(err, unix.ENXIO) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, fmt.Errorf("status of %s: %w", path, err)
	}
	return info.Device, info.Inode, true, nil
}

// loopsBackedBy lists the loop devices bound to the file with device dev
// and inode ino.
func loopsBackedBy(dev, ino uint64) ([]string, error) {
	devs, err := loopDevices()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range devs {
		bdev, bino, bound, err := loopBacking(d)
		if err != nil {
			return nil, err
		}
		if bound && bdev == dev && bino == ino {
			out = append(out, d)
		}
	}
	return out, nil
}

// detachLoop unbinds the loop device at path (LOOP_CLR_FD). If something
// still has it open the kernel only marks it autoclear and unbinds it when
// the last user closes it.
func detachLoop(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	err = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
	if err != nil && !errors.Is(err, unix.ENXIO) {
		return fmt.Errorf("release %s: %w", path, err)
	}
	return nil
}

// setLoopCapacity makes the loop device at path see its backing file's
// new size.
func setLoopCapacity(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_SET_CAPACITY, 0); err != nil {
		return fmt.Errorf("grow %s: %w", path, err)
	}
	return nil
}
