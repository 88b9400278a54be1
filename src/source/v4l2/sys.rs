//! The few V4L2 structures and ioctls linesight uses, from `linux/videodev2.h`
//! (public for the board test's output feeder, examples/v4l2_feed.rs).
//!
//! Written out by hand instead of generated with bindgen at build time, so that the
//! aarch64 cross build needs no libclang and no target kernel headers. Layouts are
//! those of 64-bit Linux (x86_64 and aarch64 share them); the tests check the sizes
//! against the ioctl numbers the kernel headers give.

#![allow(non_camel_case_types)]

use std::os::fd::RawFd;

pub const V4L2_BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
pub const V4L2_BUF_TYPE_VIDEO_OUTPUT: u32 = 2;
pub const V4L2_MEMORY_MMAP: u32 = 1;
pub const V4L2_FIELD_NONE: u32 = 1;
pub const V4L2_CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
pub const V4L2_CAP_STREAMING: u32 = 0x0400_0000;
pub const V4L2_CAP_DEVICE_CAPS: u32 = 0x8000_0000;
pub const V4L2_CAP_TIMEPERFRAME: u32 = 0x1000;
pub const V4L2_BUF_FLAG_ERROR: u32 = 0x0040;
pub const V4L2_BUF_FLAG_TIMESTAMP_MASK: u32 = 0xe000;
pub const V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC: u32 = 0x2000;
pub const V4L2_FRMSIZE_TYPE_DISCRETE: u32 = 1;
pub const V4L2_CTRL_FLAG_DISABLED: u32 = 0x0001;
pub const V4L2_CTRL_FLAG_NEXT_CTRL: u32 = 0x8000_0000;
pub const V4L2_CTRL_TYPE_CTRL_CLASS: u32 = 6;

pub const V4L2_CID_GAIN: u32 = 0x0098_0913;
pub const V4L2_CID_AUTOGAIN: u32 = 0x0098_0912;
pub const V4L2_CID_EXPOSURE: u32 = 0x0098_0911;
pub const V4L2_CID_EXPOSURE_AUTO: u32 = 0x009a_0901;
pub const V4L2_CID_EXPOSURE_ABSOLUTE: u32 = 0x009a_0902;
pub const V4L2_EXPOSURE_MANUAL: i32 = 1;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_capability {
    pub driver: [u8; 16],
    pub card: [u8; 32],
    pub bus_info: [u8; 32],
    pub version: u32,
    pub capabilities: u32,
    pub device_caps: u32,
    pub reserved: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_fmtdesc {
    pub index: u32,
    pub type_: u32,
    pub flags: u32,
    pub description: [u8; 32],
    pub pixelformat: u32,
    pub mbus_code: u32,
    pub reserved: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_pix_format {
    pub width: u32,
    pub height: u32,
    pub pixelformat: u32,
    pub field: u32,
    pub bytesperline: u32,
    pub sizeimage: u32,
    pub colorspace: u32,
    pub priv_: u32,
    pub flags: u32,
    pub ycbcr_enc: u32,
    pub quantization: u32,
    pub xfer_func: u32,
}

/// `struct v4l2_format`: its union holds pointers (v4l2_window), hence 8-byte alignment.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_format {
    pub type_: u32,
    pub fmt: v4l2_format_union,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union v4l2_format_union {
    pub pix: v4l2_pix_format,
    pub raw_data: [u8; 200],
    _align: [u64; 25],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_requestbuffers {
    pub count: u32,
    pub type_: u32,
    pub memory: u32,
    pub capabilities: u32,
    pub flags: u8,
    pub reserved: [u8; 3],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_timecode {
    pub type_: u32,
    pub flags: u32,
    pub frames: u8,
    pub seconds: u8,
    pub minutes: u8,
    pub hours: u8,
    pub userbits: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union v4l2_buffer_m {
    pub offset: u32,
    pub userptr: libc::c_ulong,
    pub fd: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_buffer {
    pub index: u32,
    pub type_: u32,
    pub bytesused: u32,
    pub flags: u32,
    pub field: u32,
    pub timestamp: libc::timeval,
    pub timecode: v4l2_timecode,
    pub sequence: u32,
    pub memory: u32,
    pub m: v4l2_buffer_m,
    pub length: u32,
    pub reserved2: u32,
    pub request_fd: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_fract {
    pub numerator: u32,
    pub denominator: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_captureparm {
    pub capability: u32,
    pub capturemode: u32,
    pub timeperframe: v4l2_fract,
    pub extendedmode: u32,
    pub readbuffers: u32,
    pub reserved: [u32; 4],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_streamparm {
    pub type_: u32,
    pub parm: v4l2_streamparm_union,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union v4l2_streamparm_union {
    pub capture: v4l2_captureparm,
    pub raw_data: [u8; 200],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_control {
    pub id: u32,
    pub value: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_queryctrl {
    pub id: u32,
    pub type_: u32,
    pub name: [u8; 32],
    pub minimum: i32,
    pub maximum: i32,
    pub step: i32,
    pub default_value: i32,
    pub flags: u32,
    pub reserved: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_frmsizeenum {
    pub index: u32,
    pub pixel_format: u32,
    pub type_: u32,
    /// discrete: width, height; stepwise: min/max/step width, min/max/step height.
    pub size: [u32; 6],
    pub reserved: [u32; 2],
}

/// All-zero value of a plain C struct, as the V4L2 API expects before filling in.
pub fn zeroed<T: Copy>() -> T {
    // SAFETY: only used with the repr(C) structs above, for which all-zero bytes are valid.
    unsafe { std::mem::zeroed() }
}

const fn ioc(dir: u32, nr: u32, size: usize) -> libc::c_ulong {
    ((dir << 30) | ((size as u32) << 16) | ((b'V' as u32) << 8) | nr) as libc::c_ulong
}
const R: u32 = 2;
const W: u32 = 1;
const RW: u32 = 3;

pub const VIDIOC_QUERYCAP: libc::c_ulong = ioc(R, 0, std::mem::size_of::<v4l2_capability>());
pub const VIDIOC_ENUM_FMT: libc::c_ulong = ioc(RW, 2, std::mem::size_of::<v4l2_fmtdesc>());
pub const VIDIOC_G_FMT: libc::c_ulong = ioc(RW, 4, std::mem::size_of::<v4l2_format>());
pub const VIDIOC_S_FMT: libc::c_ulong = ioc(RW, 5, std::mem::size_of::<v4l2_format>());
pub const VIDIOC_REQBUFS: libc::c_ulong = ioc(RW, 8, std::mem::size_of::<v4l2_requestbuffers>());
pub const VIDIOC_QUERYBUF: libc::c_ulong = ioc(RW, 9, std::mem::size_of::<v4l2_buffer>());
pub const VIDIOC_QBUF: libc::c_ulong = ioc(RW, 15, std::mem::size_of::<v4l2_buffer>());
pub const VIDIOC_DQBUF: libc::c_ulong = ioc(RW, 17, std::mem::size_of::<v4l2_buffer>());
pub const VIDIOC_STREAMON: libc::c_ulong = ioc(W, 18, std::mem::size_of::<i32>());
pub const VIDIOC_STREAMOFF: libc::c_ulong = ioc(W, 19, std::mem::size_of::<i32>());
pub const VIDIOC_G_PARM: libc::c_ulong = ioc(RW, 21, std::mem::size_of::<v4l2_streamparm>());
pub const VIDIOC_S_PARM: libc::c_ulong = ioc(RW, 22, std::mem::size_of::<v4l2_streamparm>());
pub const VIDIOC_G_CTRL: libc::c_ulong = ioc(RW, 27, std::mem::size_of::<v4l2_control>());
pub const VIDIOC_S_CTRL: libc::c_ulong = ioc(RW, 28, std::mem::size_of::<v4l2_control>());
pub const VIDIOC_QUERYCTRL: libc::c_ulong = ioc(RW, 36, std::mem::size_of::<v4l2_queryctrl>());
pub const VIDIOC_ENUM_FRAMESIZES: libc::c_ulong = ioc(RW, 74, std::mem::size_of::<v4l2_frmsizeenum>());

/// ioctl on `fd`, retried on EINTR.
pub fn xioctl<T>(fd: RawFd, request: libc::c_ulong, arg: &mut T) -> std::io::Result<()> {
    loop {
        // SAFETY: `arg` is a live, exclusively borrowed value of the type the request expects.
        let rc = unsafe { libc::ioctl(fd, request as _, arg as *mut T) };
        if rc != -1 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A NUL-padded C string field.
pub fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_headers_on_64_bit_linux() {
        // Values as the kernel's videodev2.h gives them on x86_64 and aarch64.
        assert_eq!(VIDIOC_QUERYCAP, 0x8068_5600);
        assert_eq!(VIDIOC_ENUM_FMT, 0xc040_5602);
        assert_eq!(VIDIOC_G_FMT, 0xc0d0_5604);
        assert_eq!(VIDIOC_S_FMT, 0xc0d0_5605);
        assert_eq!(VIDIOC_REQBUFS, 0xc014_5608);
        assert_eq!(VIDIOC_QUERYBUF, 0xc058_5609);
        assert_eq!(VIDIOC_QBUF, 0xc058_560f);
        assert_eq!(VIDIOC_DQBUF, 0xc058_5611);
        assert_eq!(VIDIOC_STREAMON, 0x4004_5612);
        assert_eq!(VIDIOC_STREAMOFF, 0x4004_5613);
        assert_eq!(VIDIOC_G_PARM, 0xc0cc_5615);
        assert_eq!(VIDIOC_S_PARM, 0xc0cc_5616);
        assert_eq!(VIDIOC_G_CTRL, 0xc008_561b);
        assert_eq!(VIDIOC_S_CTRL, 0xc008_561c);
        assert_eq!(VIDIOC_QUERYCTRL, 0xc044_5624);
        assert_eq!(VIDIOC_ENUM_FRAMESIZES, 0xc02c_564a);
    }

    #[test]
    fn buffer_fields_sit_where_the_kernel_puts_them() {
        let b: v4l2_buffer = zeroed();
        let base = &b as *const _ as usize;
        assert_eq!(&b.timestamp as *const _ as usize - base, 24);
        assert_eq!(&b.sequence as *const _ as usize - base, 56);
        assert_eq!(&b.m as *const _ as usize - base, 64);
        assert_eq!(&b.length as *const _ as usize - base, 72);
        let f: v4l2_format = zeroed();
        assert_eq!(&f.fmt as *const _ as usize - &f as *const _ as usize, 8);
    }
}
