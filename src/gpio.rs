//! GPIO lines as the configuration names them: a chip by device path or label, a line by
//! offset or name. One lookup for the trigger input (source::trigger::sensor), the reject
//! and fault outputs (actuate::gpio_line) and `linesight check`, so all three accept and
//! report the same.

use crate::config::LineRef;
use anyhow::{anyhow, bail, Context};

/// A chip by path (`/dev/gpiochip0`) or label (`9030000.pl061`); `key` names it in messages.
pub fn find_chip(chip: &str, key: &str) -> anyhow::Result<gpiocdev::chip::Chip> {
    if chip.starts_with('/') {
        return gpiocdev::chip::Chip::from_path(chip).with_context(|| format!("{key}.chip: cannot open {chip}"));
    }
    let mut labels = Vec::new();
    for path in gpiocdev::chip::chips().with_context(|| format!("{key}.chip: cannot list GPIO chips in /dev"))? {
        let c = gpiocdev::chip::Chip::from_path(&path)?;
        let info = c.info()?;
        if info.label == chip {
            return Ok(c);
        }
        labels.push(format!("{} ({})", info.label, path.display()));
    }
    bail!(
        "{key}.chip: no GPIO chip labelled \"{chip}\"; found: {}",
        if labels.is_empty() {
            "none".into()
        } else {
            labels.join(", ")
        }
    )
}

/// The line's offset on `chip`, checked against the chip's size.
pub fn find_offset(chip: &gpiocdev::chip::Chip, line: &LineRef, key: &str) -> anyhow::Result<u32> {
    let info = chip.info()?;
    match line {
        LineRef::Offset(o) if *o < info.num_lines => Ok(*o),
        LineRef::Offset(o) => bail!(
            "{key}.line: offset {o} does not exist on {} (it has {} lines)",
            chip.path().display(),
            info.num_lines
        ),
        LineRef::Name(n) => chip.find_line_info(n).map(|i| i.offset).ok_or_else(|| {
            anyhow!(
                "{key}.line: no line named \"{n}\" on {} ({})",
                chip.path().display(),
                info.label
            )
        }),
    }
}

/// One line for `linesight check`: the chip, the line's name and who holds it.
pub fn describe_line(chip: &str, line: &LineRef, key: &str) -> anyhow::Result<String> {
    let c = find_chip(chip, key)?;
    let offset = find_offset(&c, line, key)?;
    let info = c.info()?;
    let l = c.line_info(offset)?;
    Ok(format!(
        "{} ({}, {} lines) line {offset} \"{}\"{}",
        c.path().display(),
        info.label,
        info.num_lines,
        l.name,
        if l.used {
            format!(", in use by \"{}\"", l.consumer)
        } else {
            ", free".into()
        }
    ))
}
