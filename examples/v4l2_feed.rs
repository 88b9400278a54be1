//! Feeds one raw YUYV frame to a V4L2 output device over and over, through mmap
//! streaming, until killed. The virtual-board camera test writes synthetic parts to
//! vivid's HDMI output with it; vivid's video loop brings them back on its capture.
//!
//!     v4l2_feed /dev/video3 1280 720 part.yuyv

use anyhow::{bail, Context};
use linesight::source::v4l2::sys::*;
use linesight::source::v4l2::FourCc;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, device, width, height, file] = &args[..] else {
        bail!("usage: v4l2_feed DEVICE WIDTH HEIGHT FRAME.yuyv");
    };
    let (w, h): (u32, u32) = (width.parse()?, height.parse()?);
    let frame = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .with_context(|| format!("cannot open {device}"))?;
    let fd = dev.as_raw_fd();

    let mut f: v4l2_format = zeroed();
    f.type_ = V4L2_BUF_TYPE_VIDEO_OUTPUT;
    xioctl(fd, VIDIOC_G_FMT, &mut f).context("VIDIOC_G_FMT")?;
    // SAFETY: an output format's union holds `pix`.
    let mut pix = unsafe { f.fmt.pix };
    pix.width = w;
    pix.height = h;
    pix.pixelformat = FourCc::Yuyv.code();
    pix.field = V4L2_FIELD_NONE;
    pix.bytesperline = 0;
    pix.sizeimage = 0;
    f.fmt.pix = pix;
    xioctl(fd, VIDIOC_S_FMT, &mut f).context("VIDIOC_S_FMT")?;
    // SAFETY: as above.
    let got = unsafe { f.fmt.pix };
    if (got.width, got.height, got.pixelformat) != (w, h, FourCc::Yuyv.code()) {
        bail!(
            "{device} gives {}x{} {:#x} for {w}x{h} YUYV",
            got.width,
            got.height,
            got.pixelformat
        );
    }
    let (stride, size) = (got.bytesperline as usize, got.sizeimage as usize);
    let row = w as usize * 2;
    if frame.len() != row * h as usize {
        bail!(
            "{file} holds {} bytes, a {w}x{h} YUYV frame {}",
            frame.len(),
            row * h as usize
        );
    }

    let mut req = v4l2_requestbuffers {
        count: 4,
        type_: V4L2_BUF_TYPE_VIDEO_OUTPUT,
        memory: V4L2_MEMORY_MMAP,
        capabilities: 0,
        flags: 0,
        reserved: [0; 3],
    };
    xioctl(fd, VIDIOC_REQBUFS, &mut req).context("VIDIOC_REQBUFS")?;
    for index in 0..req.count {
        let mut b: v4l2_buffer = zeroed();
        b.index = index;
        b.type_ = V4L2_BUF_TYPE_VIDEO_OUTPUT;
        b.memory = V4L2_MEMORY_MMAP;
        xioctl(fd, VIDIOC_QUERYBUF, &mut b).context("VIDIOC_QUERYBUF")?;
        // SAFETY: maps the driver's buffer at the offset it gave, for writing.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                b.length as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                b.m.offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mmap");
        }
        // SAFETY: the mapping is b.length bytes long and ours until the process ends.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr as *mut u8, b.length as usize) };
        for y in 0..h as usize {
            buf[y * stride..][..row].copy_from_slice(&frame[y * row..][..row]);
        }
        b.bytesused = size as u32;
        b.field = V4L2_FIELD_NONE;
        xioctl(fd, VIDIOC_QBUF, &mut b).context("VIDIOC_QBUF")?;
    }
    let mut t = V4L2_BUF_TYPE_VIDEO_OUTPUT as i32;
    xioctl(fd, VIDIOC_STREAMON, &mut t).context("VIDIOC_STREAMON")?;
    eprintln!(
        "v4l2_feed: {device} streaming {file} ({w}x{h} YUYV, {} buffers)",
        req.count
    );
    // Each buffer keeps the frame: give it back as soon as the driver has shown it.
    loop {
        let mut b: v4l2_buffer = zeroed();
        b.type_ = V4L2_BUF_TYPE_VIDEO_OUTPUT;
        b.memory = V4L2_MEMORY_MMAP;
        xioctl(fd, VIDIOC_DQBUF, &mut b).context("VIDIOC_DQBUF")?;
        b.bytesused = size as u32;
        b.field = V4L2_FIELD_NONE;
        xioctl(fd, VIDIOC_QBUF, &mut b).context("VIDIOC_QBUF")?;
    }
}
