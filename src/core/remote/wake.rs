//! Wake-on-LAN: the magic packet (6 × `0xFF`, then the MAC 16 times) sent by UDP to a broadcast address,
//! from this machine or from an always-on fleet host (`wake.via`) over its ssh master.
//!
//! Sending through `via` runs a small POSIX shell script on that host which uses the first of `python3`,
//! `socat` or `bash` (its `/dev/udp` redirection) it finds. `python3` and `socat` set `SO_BROADCAST`;
//! bash's redirection does not, so with only bash the address must be a unicast one (the kernel refuses a
//! broadcast without the option).
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use super::{Remote, RemoteError, quote};
use crate::core::fleet::{Fleet, parse_mac};

/// Broadcast address when the fleet gives none.
pub const DEFAULT_BROADCAST: Ipv4Addr = Ipv4Addr::BROADCAST;
/// The discard port, the usual Wake-on-LAN port.
pub const DEFAULT_PORT: u16 = 9;
/// Bound on the remote send through `via`.
const VIA_TIMEOUT: Duration = Duration::from_secs(15);

/// The 102-byte magic packet for `mac`.
pub fn magic_packet(mac: [u8; 6]) -> Vec<u8> {
    let mut p = vec![0xFF; 6];
    for _ in 0..16 {
        p.extend_from_slice(&mac);
    }
    p
}

/// How a host is woken, from its fleet entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub host: String,
    pub mac: [u8; 6],
    pub to: SocketAddrV4,
    pub via: Option<String>,
}

/// What was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub to: SocketAddrV4,
    /// The fleet host that sent it; `None` for this machine.
    pub via: Option<String>,
    /// The program that sent it on `via` (`python3`, `socat`, `bash`).
    pub program: Option<String>,
}

/// Whether `host` has a `mac` (so it can be woken).
pub fn wakeable(fleet: &Fleet, host: &str) -> bool {
    fleet.hosts.get(host).is_some_and(|h| h.mac.is_some())
}

/// The wake plan of `host`; an error when it has no `mac`.
pub fn plan(fleet: &Fleet, host: &str) -> Result<Plan, RemoteError> {
    super::target(fleet, host)?;
    let Some(h) = fleet.hosts.get(host) else {
        return Err(RemoteError::Invalid(
            "cannot wake this machine (it is not a fleet host with `mac`)".into(),
        ));
    };
    let Some(mac) = &h.mac else {
        return Err(RemoteError::Invalid(format!(
            "cannot wake {host:?}: the fleet gives it no `mac` (hosts.{host}.mac = \"aa:bb:cc:dd:ee:ff\")"
        )));
    };
    let mac = parse_mac(mac).map_err(RemoteError::Invalid)?;
    let wake = h.wake.clone().unwrap_or_default();
    let ip = match &wake.broadcast {
        Some(b) => b.parse::<Ipv4Addr>().map_err(|_| {
            RemoteError::Invalid(format!("wake.broadcast: not an IPv4 address: {b:?}"))
        })?,
        None => DEFAULT_BROADCAST,
    };
    Ok(Plan {
        host: host.to_string(),
        mac,
        to: SocketAddrV4::new(ip, wake.port.unwrap_or(DEFAULT_PORT)),
        via: wake.via,
    })
}

/// Sends `packet` from this machine (broadcast allowed).
pub async fn send_local(packet: &[u8], to: SocketAddrV4) -> Result<(), RemoteError> {
    let fail = |e: std::io::Error| {
        RemoteError::Connect(format!("cannot send the magic packet to {to}: {e}"))
    };
    let sock = tokio::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .await
        .map_err(fail)?;
    sock.set_broadcast(true).map_err(fail)?;
    sock.send_to(packet, to).await.map_err(fail)?;
    Ok(())
}

/// The script that sends `packet` to `to` from a remote host and prints the program it used.
pub fn via_script(packet: &[u8], to: SocketAddrV4) -> Result<String, RemoteError> {
    let hex: String = packet.iter().map(|b| format!("{b:02x}")).collect();
    // POSIX printf understands octal escapes (dash's has no \x).
    let octal: String = packet.iter().map(|b| format!("\\{b:03o}")).collect();
    let py = "import socket,sys\n\
              s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
              s.setsockopt(socket.SOL_SOCKET,socket.SO_BROADCAST,1)\n\
              s.sendto(bytes.fromhex(sys.argv[1]),(sys.argv[2],int(sys.argv[3])))";
    Ok(format!(
        "h={hex}; o={octal}; a={addr}; p={port}\n\
         if command -v python3 >/dev/null 2>&1 && python3 -c {py} \"$h\" \"$a\" \"$p\" 2>/dev/null; then echo python3; exit 0; fi\n\
         if command -v socat >/dev/null 2>&1 && printf \"$o\" | socat -u - \"UDP-DATAGRAM:$a:$p,broadcast\" 2>/dev/null; then echo socat; exit 0; fi\n\
         if command -v bash >/dev/null 2>&1 && bash -c 'printf \"$1\" >\"/dev/udp/$2/$3\"' _ \"$o\" \"$a\" \"$p\"; then echo bash; exit 0; fi\n\
         echo 'no python3, socat or bash could send the packet' >&2; exit 1\n",
        octal = quote(&octal)?,
        addr = to.ip(),
        port = to.port(),
        py = quote(py)?,
    ))
}

/// Wakes `host`: the magic packet to its broadcast address, from here or from `via`.
pub async fn wake(remote: &Remote, host: &str) -> Result<Sent, RemoteError> {
    let plan = plan(remote.fleet(), host)?;
    let packet = magic_packet(plan.mac);
    match &plan.via {
        None => {
            send_local(&packet, plan.to).await?;
            Ok(Sent {
                to: plan.to,
                via: None,
                program: None,
            })
        }
        Some(via) => {
            let out = remote
                .script(via, &via_script(&packet, plan.to)?, VIA_TIMEOUT)
                .await
                .map_err(|e| RemoteError::Connect(format!("through {via}: {e}")))?;
            if !out.ok() {
                return Err(RemoteError::Connect(format!(
                    "through {via}: {}",
                    out.failure_summary()
                )));
            }
            Ok(Sent {
                to: plan.to,
                via: Some(via.clone()),
                program: Some(String::from_utf8_lossy(&out.stdout).trim().to_string()),
            })
        }
    }
}

/// How often the packet is sent again while waiting (a NIC or switch may miss one).
pub const RESEND_EVERY: Duration = Duration::from_secs(30);

/// Wakes `host` unless it answers within a short probe, then waits until it answers, sending the packet
/// again every [`RESEND_EVERY`]; the errors of [`Remote::wait_online`] after `timeout`.
pub async fn wake_and_wait(
    remote: &Remote,
    host: &str,
    timeout: Duration,
    interval: Duration,
) -> Result<Option<Sent>, RemoteError> {
    // Checked first, so a host without `mac` is misuse even when it happens to be up.
    plan(remote.fleet(), host)?;
    if remote.online(host, Duration::from_secs(2)).await? {
        return Ok(None);
    }
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let sent = wake(remote, host).await?;
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match remote
            .wait_online(host, left.min(RESEND_EVERY), interval)
            .await
        {
            Ok(()) => return Ok(Some(sent)),
            Err(RemoteError::NotOnline { cause, .. }) if left > RESEND_EVERY => {
                tracing::debug!("{host} not up yet ({cause}); sending the magic packet again");
            }
            Err(RemoteError::NotOnline { cause, .. }) => {
                return Err(RemoteError::NotOnline {
                    after: timeout,
                    cause,
                });
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_is_six_ff_then_sixteen_macs() {
        let mac = [1, 2, 3, 4, 5, 6];
        let p = magic_packet(mac);
        assert_eq!(p.len(), 102);
        assert_eq!(&p[..6], &[0xFF; 6]);
        assert!(p[6..].chunks(6).all(|c| c == mac));
    }

    #[test]
    fn via_script_carries_the_bytes_as_octal_and_hex() {
        let s = via_script(&[0xff, 0x00, 0x0a], "127.0.0.1:9".parse().unwrap()).unwrap();
        let first = s.lines().next().unwrap();
        assert!(first.starts_with("h=ff000a; o="), "{s}");
        assert!(first.ends_with("; a=127.0.0.1; p=9"), "{s}");
        // What sh makes of the variables: printf turns the octal text into the packet's bytes.
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("{first}\nprintf \"$o\"")])
            .output()
            .unwrap();
        assert_eq!(out.stdout, [0xff, 0x00, 0x0a]);
    }
}
