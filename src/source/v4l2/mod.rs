//! `[camera] kind = "v4l2"`: a V4L2 capture device, streamed through mmap buffers.
//!
//! Open: query capabilities, choose the pixel format (GREY, YUYV or MJPG), set size and
//! frame rate, apply exposure and gain, map the kernel buffers and start streaming.
//! Each frame's capture time is the kernel's buffer timestamp (CLOCK_MONOTONIC on every
//! current driver), so it compares directly with trigger edges and reject pulses.

mod convert;
pub mod sys;

pub use convert::{fourcc_name, to_pixels, FourCc};

use super::Source;
use crate::clock;
use crate::config::V4l2Camera;
use crate::frame::PixelFormat;
use crate::frame::{Frame, NoImage};
use anyhow::{bail, Context};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use sys::*;

/// One mapped kernel buffer.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

pub struct V4l2Source {
    // Field order matters for Drop: buffers are unmapped before the file is closed.
    buffers: Vec<Mapped>,
    file: File,
    path: PathBuf,
    format: FourCc,
    size: (u32, u32),
    stride: usize,
    rgb: bool,
    wait: Duration,
    next_id: u64,
    describe: String,
    kernel_timestamps: bool,
}

// SAFETY: the mapped pointers belong to this source alone and are only touched through &mut self.
unsafe impl Send for V4l2Source {}

/// One pixel format a device offers.
pub struct FormatInfo {
    /// The four-character code as text ("YUYV").
    pub fourcc: String,
    pub description: String,
    /// Discrete frame sizes (empty: stepwise or continuous, any size in a range).
    pub sizes: Vec<(u32, u32)>,
}

/// What the device says about itself, for `open` and `linesight check`.
pub struct DeviceInfo {
    pub driver: String,
    pub card: String,
    /// Every pixel format the device offers.
    pub formats: Vec<FormatInfo>,
    /// (name, min, max, current) of the exposure and gain controls it has.
    pub controls: Vec<(String, i32, i32, i32)>,
    /// Every control by the name `camera.controls` takes, with its id.
    pub all_controls: Vec<(String, u32)>,
    pub current: (String, u32, u32),
}

fn open_file(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("camera.device: cannot open {}", path.display()))
}

fn query_ctrl(fd: RawFd, id: u32) -> Option<v4l2_queryctrl> {
    let mut q: v4l2_queryctrl = zeroed();
    q.id = id;
    (xioctl(fd, VIDIOC_QUERYCTRL, &mut q).is_ok() && q.flags & V4L2_CTRL_FLAG_DISABLED == 0).then_some(q)
}

fn get_ctrl(fd: RawFd, id: u32) -> Option<i32> {
    let mut c = v4l2_control { id, value: 0 };
    xioctl(fd, VIDIOC_G_CTRL, &mut c).ok().map(|_| c.value)
}

fn set_ctrl(fd: RawFd, id: u32, value: i32, key: &str) -> anyhow::Result<()> {
    let mut c = v4l2_control { id, value };
    xioctl(fd, VIDIOC_S_CTRL, &mut c).with_context(|| format!("{key}: the device refused {value}"))
}

/// A control's name as v4l2-ctl writes it: "Loop Video" → "loop_video".
pub fn control_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

/// Capabilities, formats and controls of a capture device.
pub fn probe(path: &Path) -> anyhow::Result<DeviceInfo> {
    let file = open_file(path)?;
    let fd = file.as_raw_fd();
    let mut cap: v4l2_capability = zeroed();
    xioctl(fd, VIDIOC_QUERYCAP, &mut cap)
        .with_context(|| format!("camera.device: {} is not a V4L2 device", path.display()))?;
    let caps = if cap.capabilities & V4L2_CAP_DEVICE_CAPS != 0 {
        cap.device_caps
    } else {
        cap.capabilities
    };
    if caps & V4L2_CAP_VIDEO_CAPTURE == 0 || caps & V4L2_CAP_STREAMING == 0 {
        bail!(
            "camera.device: {} ({}) is not a streaming video capture device (capabilities {caps:#x})",
            path.display(),
            c_str(&cap.card)
        );
    }
    let mut formats = Vec::new();
    for index in 0.. {
        let mut d: v4l2_fmtdesc = zeroed();
        d.index = index;
        d.type_ = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        if xioctl(fd, VIDIOC_ENUM_FMT, &mut d).is_err() {
            break;
        }
        let mut sizes = Vec::new();
        for i in 0..64 {
            let mut s: v4l2_frmsizeenum = zeroed();
            s.index = i;
            s.pixel_format = d.pixelformat;
            if xioctl(fd, VIDIOC_ENUM_FRAMESIZES, &mut s).is_err() || s.type_ != V4L2_FRMSIZE_TYPE_DISCRETE {
                break;
            }
            sizes.push((s.size[0], s.size[1]));
        }
        formats.push(FormatInfo {
            fourcc: fourcc_name(d.pixelformat),
            description: c_str(&d.description),
            sizes,
        });
    }
    let mut controls = Vec::new();
    for (id, name) in [
        (V4L2_CID_EXPOSURE_ABSOLUTE, "exposure_absolute (100 µs)"),
        (V4L2_CID_EXPOSURE, "exposure"),
        (V4L2_CID_GAIN, "gain"),
    ] {
        if let Some(q) = query_ctrl(fd, id) {
            controls.push((
                name.to_string(),
                q.minimum,
                q.maximum,
                get_ctrl(fd, id).unwrap_or(q.default_value),
            ));
        }
    }
    let mut all_controls = Vec::new();
    let mut id = 0;
    loop {
        let mut q: v4l2_queryctrl = zeroed();
        q.id = id | V4L2_CTRL_FLAG_NEXT_CTRL;
        if xioctl(fd, VIDIOC_QUERYCTRL, &mut q).is_err() || q.id == id {
            break;
        }
        id = q.id;
        if q.type_ != V4L2_CTRL_TYPE_CTRL_CLASS && q.flags & V4L2_CTRL_FLAG_DISABLED == 0 {
            all_controls.push((control_name(&c_str(&q.name)), q.id));
        }
    }
    let mut f: v4l2_format = zeroed();
    f.type_ = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    xioctl(fd, VIDIOC_G_FMT, &mut f).context("VIDIOC_G_FMT")?;
    // SAFETY: a capture format's union holds `pix`.
    let pix = unsafe { f.fmt.pix };
    Ok(DeviceInfo {
        all_controls,
        driver: c_str(&cap.driver),
        card: c_str(&cap.card),
        formats,
        controls,
        current: (fourcc_name(pix.pixelformat), pix.width, pix.height),
    })
}

impl DeviceInfo {
    /// One paragraph for `linesight check`: the formats linesight can use with their
    /// sizes, the others by name, and the exposure and gain controls.
    pub fn render(&self) -> String {
        let mut s = format!(
            "driver {}, card \"{}\", now {} {}x{}; formats linesight uses:",
            self.driver, self.card, self.current.0, self.current.1, self.current.2
        );
        let (usable, other): (Vec<&FormatInfo>, Vec<&FormatInfo>) =
            self.formats.iter().partition(|f| FourCc::parse(&f.fourcc).is_some());
        if usable.is_empty() {
            s += " none (GREY, YUYV or MJPG needed)";
        }
        for f in usable {
            let sizes: Vec<String> = f.sizes.iter().map(|(w, h)| format!("{w}x{h}")).collect();
            s += &format!(
                " {} [{}];",
                f.fourcc,
                if sizes.is_empty() {
                    "any size in a range".into()
                } else {
                    sizes.join(" ")
                }
            );
        }
        if !other.is_empty() {
            let names: Vec<&str> = other.iter().map(|f| f.fourcc.as_str()).collect();
            s += &format!(" others: {};", names.join(" "));
        }
        if self.controls.is_empty() {
            s += " no exposure or gain control;";
        } else {
            for (name, min, max, cur) in &self.controls {
                s += &format!(" control {name} {min}..{max} now {cur};");
            }
        }
        let names: Vec<&str> = self.all_controls.iter().map(|(n, _)| n.as_str()).collect();
        s += &format!(" controls (camera.controls): {}", names.join(" "));
        s
    }
}

impl V4l2Source {
    /// Opens and starts streaming. `channels`: the model's colour (YUYV becomes luma or RGB).
    /// `wait`: longest wait for one frame before the camera counts as stalled.
    pub fn open(c: &V4l2Camera, channels: PixelFormat, wait: Duration) -> anyhow::Result<V4l2Source> {
        let info = probe(&c.device)?;
        let file = open_file(&c.device)?;
        let fd = file.as_raw_fd();
        let offered: Vec<FourCc> = info.formats.iter().filter_map(|f| FourCc::parse(&f.fourcc)).collect();
        let all: Vec<&str> = info.formats.iter().map(|f| f.fourcc.as_str()).collect();
        let format = match &c.pixel_format {
            Some(want) => {
                let want = FourCc::parse(want).context("camera.pixel_format: validated")?;
                if !offered.contains(&want) {
                    bail!(
                        "camera.pixel_format: {} does not offer {}; it offers {}",
                        c.device.display(),
                        want.name(),
                        all.join(", ")
                    );
                }
                want
            }
            None => FourCc::PREFERENCE
                .into_iter()
                .find(|f| offered.contains(f))
                .with_context(|| {
                    format!(
                        "camera.pixel_format: {} offers none of GREY, YUYV, MJPG (it offers {})",
                        c.device.display(),
                        all.join(", ")
                    )
                })?,
        };

        // Format and size.
        let mut f: v4l2_format = zeroed();
        f.type_ = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        xioctl(fd, VIDIOC_G_FMT, &mut f).context("VIDIOC_G_FMT")?;
        // SAFETY: a capture format's union holds `pix`; we write it back the same way.
        let mut pix = unsafe { f.fmt.pix };
        pix.pixelformat = format.code();
        pix.field = V4L2_FIELD_NONE;
        if let (Some(w), Some(h)) = (c.width, c.height) {
            pix.width = w;
            pix.height = h;
        }
        pix.bytesperline = 0;
        pix.sizeimage = 0;
        f.fmt.pix = pix;
        xioctl(fd, VIDIOC_S_FMT, &mut f).with_context(|| {
            format!(
                "camera: {} refused {} {}x{}",
                c.device.display(),
                format.name(),
                pix.width,
                pix.height
            )
        })?;
        // SAFETY: as above; the driver filled in what it will deliver.
        let got = unsafe { f.fmt.pix };
        if got.pixelformat != format.code() {
            bail!(
                "camera.pixel_format: {} switched {} to {}",
                c.device.display(),
                format.name(),
                fourcc_name(got.pixelformat)
            );
        }
        if let (Some(w), Some(h)) = (c.width, c.height) {
            if (got.width, got.height) != (w, h) {
                let sizes = info
                    .formats
                    .iter()
                    .find(|f| f.fourcc == format.name())
                    .map(|f| {
                        f.sizes
                            .iter()
                            .map(|(w, h)| format!("{w}x{h}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                bail!(
                    "camera.width/height: {} gives {}x{} for {w}x{h} in {}; sizes it offers: {}",
                    c.device.display(),
                    got.width,
                    got.height,
                    format.name(),
                    if sizes.is_empty() { "any".into() } else { sizes }
                );
            }
        }

        // Frame rate.
        let mut parm: v4l2_streamparm = zeroed();
        parm.type_ = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        let mut fps = None;
        if xioctl(fd, VIDIOC_G_PARM, &mut parm).is_ok() {
            // SAFETY: a capture stream's union holds `capture`.
            let mut cp = unsafe { parm.parm.capture };
            if let Some(want) = c.fps {
                if cp.capability & V4L2_CAP_TIMEPERFRAME == 0 {
                    bail!("camera.fps: {} cannot set its frame rate", c.device.display());
                }
                cp.timeperframe = v4l2_fract {
                    numerator: 1000,
                    denominator: (want * 1000.0).round() as u32,
                };
                parm.parm.capture = cp;
                xioctl(fd, VIDIOC_S_PARM, &mut parm).with_context(|| format!("camera.fps: {want} refused"))?;
                // SAFETY: as above.
                cp = unsafe { parm.parm.capture };
            }
            let t = cp.timeperframe;
            if t.numerator > 0 && t.denominator > 0 {
                fps = Some(t.denominator as f64 / t.numerator as f64);
            }
        }

        // Exposure and gain.
        let mut controls = Vec::new();
        if let Some(us) = c.exposure_us {
            if query_ctrl(fd, V4L2_CID_EXPOSURE_ABSOLUTE).is_none() {
                bail!(
                    "camera.exposure_us: {} has no absolute exposure control (see `linesight check`)",
                    c.device.display()
                );
            }
            if query_ctrl(fd, V4L2_CID_EXPOSURE_AUTO).is_some() {
                set_ctrl(
                    fd,
                    V4L2_CID_EXPOSURE_AUTO,
                    V4L2_EXPOSURE_MANUAL,
                    "camera.exposure_us (auto exposure off)",
                )?;
            }
            // V4L2's absolute exposure is in units of 100 µs.
            set_ctrl(
                fd,
                V4L2_CID_EXPOSURE_ABSOLUTE,
                (us as i32 / 100).max(1),
                "camera.exposure_us",
            )?;
            controls.push(format!("exposure {us} µs"));
        }
        if let Some(g) = c.gain {
            let q = query_ctrl(fd, V4L2_CID_GAIN).with_context(|| {
                format!(
                    "camera.gain: {} has no gain control (see `linesight check`)",
                    c.device.display()
                )
            })?;
            if !(q.minimum..=q.maximum).contains(&g) {
                bail!(
                    "camera.gain: {g} is outside the device's range {}..{}",
                    q.minimum,
                    q.maximum
                );
            }
            if query_ctrl(fd, V4L2_CID_AUTOGAIN).is_some() {
                set_ctrl(fd, V4L2_CID_AUTOGAIN, 0, "camera.gain (auto gain off)")?;
            }
            set_ctrl(fd, V4L2_CID_GAIN, g, "camera.gain")?;
            match get_ctrl(fd, V4L2_CID_GAIN) {
                Some(now) if now != g => bail!("camera.gain: {} accepted {g} but keeps {now}", c.device.display()),
                _ => controls.push(format!("gain {g}")),
            }
        }

        for (name, value) in &c.controls {
            let Some((_, id)) = info.all_controls.iter().find(|(n, _)| n == name) else {
                let names: Vec<&str> = info.all_controls.iter().map(|(n, _)| n.as_str()).collect();
                bail!(
                    "camera.controls.{name}: {} has no such control; it has {}",
                    c.device.display(),
                    names.join(", ")
                );
            };
            set_ctrl(fd, *id, *value, &format!("camera.controls.{name}"))?;
            controls.push(format!("{name} {value}"));
        }

        // Buffers: request, map, queue, stream.
        let mut req = v4l2_requestbuffers {
            count: c.buffers,
            type_: V4L2_BUF_TYPE_VIDEO_CAPTURE,
            memory: V4L2_MEMORY_MMAP,
            capabilities: 0,
            flags: 0,
            reserved: [0; 3],
        };
        xioctl(fd, VIDIOC_REQBUFS, &mut req).context("camera: the device has no mmap streaming (VIDIOC_REQBUFS)")?;
        if req.count < 2 {
            bail!(
                "camera: {} gave {} buffer(s); streaming needs 2",
                c.device.display(),
                req.count
            );
        }
        let mut source = V4l2Source {
            buffers: Vec::new(),
            file,
            path: c.device.clone(),
            format,
            size: (got.width, got.height),
            stride: got.bytesperline as usize,
            rgb: channels == PixelFormat::Rgb8,
            wait,
            next_id: 0,
            describe: String::new(),
            kernel_timestamps: false,
        };
        for index in 0..req.count {
            let mut b = buffer(index);
            xioctl(fd, VIDIOC_QUERYBUF, &mut b).context("VIDIOC_QUERYBUF")?;
            // SAFETY: maps the kernel buffer at the offset the driver gave, read-only and shared.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    b.length as usize,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    fd,
                    b.m.offset as libc::off_t,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error()).context("camera: cannot mmap a kernel buffer");
            }
            source.buffers.push(Mapped {
                ptr,
                len: b.length as usize,
            });
            xioctl(fd, VIDIOC_QBUF, &mut b).context("VIDIOC_QBUF")?;
        }
        let mut t = V4L2_BUF_TYPE_VIDEO_CAPTURE as i32;
        xioctl(fd, VIDIOC_STREAMON, &mut t).context("camera: cannot start streaming (VIDIOC_STREAMON)")?;
        source.describe = format!(
            "v4l2 {} ({} \"{}\"): {} {}x{}{}, {} mmap buffers{}",
            c.device.display(),
            info.driver,
            info.card,
            format.name(),
            got.width,
            got.height,
            fps.map(|f| format!(" at {f:.1} fps")).unwrap_or_default(),
            req.count,
            if controls.is_empty() {
                String::new()
            } else {
                format!(", {}", controls.join(", "))
            }
        );
        Ok(source)
    }

    /// Waits for the next filled buffer; Err when the device fails or stays silent.
    fn dequeue(&mut self) -> anyhow::Result<v4l2_buffer> {
        let fd = self.file.as_raw_fd();
        let end = clock::now_ns() + self.wait.as_nanos() as u64;
        loop {
            let mut b = buffer(0);
            match xioctl(fd, VIDIOC_DQBUF, &mut b) {
                Ok(()) => return Ok(b),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e).with_context(|| format!("{}: VIDIOC_DQBUF failed", self.path.display())),
            }
            let now = clock::now_ns();
            if now >= end {
                bail!("{}: no frame for {} ms", self.path.display(), self.wait.as_millis());
            }
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = ((end - now) / 1_000_000).clamp(1, i32::MAX as u64) as i32;
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut p, 1, ms) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e).context("poll on the capture device");
                }
            } else if p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                bail!("{}: the device reports an error (unplugged?)", self.path.display());
            }
        }
    }
}

fn buffer(index: u32) -> v4l2_buffer {
    let mut b: v4l2_buffer = zeroed();
    b.index = index;
    b.type_ = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    b.memory = V4L2_MEMORY_MMAP;
    b
}

impl V4l2Source {
    /// Gives back, unread, every buffer the driver filled before the first read: frames
    /// from before the line started (while the model warmed up), stale for a part.
    fn drop_stale(&mut self) -> anyhow::Result<()> {
        let fd = self.file.as_raw_fd();
        loop {
            let mut b = buffer(0);
            match xioctl(fd, VIDIOC_DQBUF, &mut b) {
                Ok(()) => xioctl(fd, VIDIOC_QBUF, &mut b).context("VIDIOC_QBUF")?,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e).with_context(|| format!("{}: VIDIOC_DQBUF failed", self.path.display())),
            }
        }
    }
}

impl Source for V4l2Source {
    fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        if self.next_id == 0 {
            self.drop_stale()?;
        }
        let mut b = self.dequeue()?;
        let arrived = clock::now_ns();
        self.kernel_timestamps = b.flags & V4L2_BUF_FLAG_TIMESTAMP_MASK == V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC;
        let capture_ns = if self.kernel_timestamps {
            b.timestamp.tv_sec as u64 * 1_000_000_000 + b.timestamp.tv_usec as u64 * 1000
        } else {
            arrived
        };
        let m = self
            .buffers
            .get(b.index as usize)
            .with_context(|| format!("driver returned buffer {} of {}", b.index, self.buffers.len()))?;
        let used = (b.bytesused as usize).min(m.len);
        // SAFETY: the driver filled `used` bytes of this mapping and will not touch it until QBUF.
        let data = unsafe { std::slice::from_raw_parts(m.ptr as *const u8, used) };
        let image = if b.flags & V4L2_BUF_FLAG_ERROR != 0 {
            Err(NoImage::broken(
                "the driver flagged this frame as corrupted (V4L2_BUF_FLAG_ERROR)",
            ))
        } else {
            to_pixels(data, self.format, self.size, self.stride, self.rgb).map_err(NoImage::broken)
        };
        // The buffer goes straight back to the driver: the frame owns its pixels now.
        xioctl(self.file.as_raw_fd(), VIDIOC_QBUF, &mut b)
            .with_context(|| format!("{}: VIDIOC_QBUF failed", self.path.display()))?;
        self.next_id += 1;
        Ok(Some(Frame {
            id: self.next_id - 1,
            capture_ns,
            frame_ns: None,
            image,
            truth: None,
            origin: Some(format!("{} seq {}", self.path.display(), b.sequence)),
        }))
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

impl Drop for V4l2Source {
    fn drop(&mut self) {
        let mut t = V4L2_BUF_TYPE_VIDEO_CAPTURE as i32;
        let _ = xioctl(self.file.as_raw_fd(), VIDIOC_STREAMOFF, &mut t);
        for m in self.buffers.drain(..) {
            // SAFETY: each mapping was made by mmap with this length and is unmapped once.
            unsafe { libc::munmap(m.ptr, m.len) };
        }
    }
}
