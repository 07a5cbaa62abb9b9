//! Boot-loader snippets for a release: a GRUB2 `grub.cfg` and an iPXE
//! script whose kernel command line points `inst.stage2=` at the release
//! directory, for booting it over an IPv6-only network.

/// The files a release ships that the boot entries name.
#[derive(Debug, Clone)]
pub struct BootFiles<'a> {
    /// Release name, for the menu title.
    pub release: &'a str,
    /// Where the release directory is served (no trailing `/`).
    pub base_url: &'a str,
    /// Kernel file name inside the release.
    pub kernel: &'a str,
    /// Whether the release has an `updates.img`.
    pub updates: bool,
    /// Extra kernel arguments.
    pub cmdline: Option<&'a str>,
}

/// A word for a GRUB script: bare when every character is one GRUB's
/// lexer reads literally, else single-quoted. Inside single quotes GRUB
/// expands nothing (`$`, `\\`, `;`, `{`, `#`, `*` are literal); a `'` is
/// written `'\\''` (end the quote, an escaped quote, start again).
pub fn grub_word(w: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=,@+%[]()~^".contains(c);
    if !w.is_empty() && w.chars().all(plain) {
        w.to_string()
    } else {
        grub_quoted(w)
    }
}

/// `s` single-quoted for GRUB, whatever it holds.
fn grub_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A file name as one URL path segment: every byte outside RFC 3986's
/// unreserved characters percent-encoded, so neither boot script nor the
/// server sees a separator, a quote or a space.
pub fn url_segment(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Text for a `#` comment line: control characters (which would end the
/// comment and start a command) become `?`. The recipe loader already
/// refuses them in the release name; this keeps the writer safe on its own.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl BootFiles<'_> {
    /// The kernel arguments, one word each (a newline or tab in the
    /// command line only separates words, as a space does).
    fn args(&self) -> Vec<String> {
        let mut a = vec![format!("inst.stage2={}", self.base_url)];
        if self.updates {
            a.push(format!("inst.updates={}/updates.img", self.base_url));
        }
        if let Some(c) = self.cmdline {
            a.extend(c.split_whitespace().map(str::to_string));
        }
        a
    }

    /// GRUB2 syntax for the HTTP URL: `(http,HOST)/PATH`.
    fn grub_url(&self, file: &str) -> String {
        let rest = self
            .base_url
            .strip_prefix("http://")
            .or_else(|| self.base_url.strip_prefix("https://"))
            .unwrap_or(self.base_url);
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let path = path.trim_end_matches('/');
        let file = url_segment(file);
        if path.is_empty() {
            format!("(http,{host})/{file}")
        } else {
            format!("(http,{host})/{path}/{file}")
        }
    }

    /// A `grub.cfg` snippet with one menu entry. Every word is quoted for
    /// GRUB's script language where it needs it ([`grub_word`]). EL7's
    /// GRUB2 on UEFI (the only firmware that netboots over IPv6) loads the
    /// kernel with `linuxefi`/`initrdefi`; a newer GRUB2 takes `linux` and
    /// `initrd`.
    pub fn grub_cfg(&self) -> String {
        let title = format!("Install {} (IPv6 only)", self.release);
        let args: Vec<String> = self.args().iter().map(|a| grub_word(a)).collect();
        format!(
            "# v6build: boot release {release} over the network.\n\
             # Include this from your grub.cfg or use it as the netboot config.\n\
             # EL7's GRUB2 on UEFI: linuxefi/initrdefi (a newer GRUB2: linux/initrd).\n\
             menuentry {title} --class os {{\n\
             \tlinuxefi {kernel} {args}\n\
             \tinitrdefi {initrd}\n\
             }}\n",
            release = comment(self.release),
            title = grub_quoted(&comment(&title)),
            kernel = grub_word(&self.grub_url(self.kernel)),
            initrd = grub_word(&self.grub_url("initrd.img")),
            args = args.join(" "),
        )
    }

    /// An iPXE script. iPXE has no quoting: the recipe loader refuses what
    /// iPXE would interpret (`${`, `||`, `&&`, a word starting with `#`,
    /// control characters, and quotes or spaces in `base-url`), and the
    /// kernel's file name is percent-encoded. `ifconf -c ipv6` configures
    /// the interface by IPv6 autoconfiguration (SLAAC) first.
    pub fn ipxe(&self) -> String {
        format!(
            "#!ipxe\n\
             # v6build: boot release {release} over the network.\n\
             ifconf -c ipv6\n\
             kernel {base}/{kernel} initrd=initrd.img {args}\n\
             initrd {base}/initrd.img\n\
             boot\n",
            release = comment(self.release),
            base = self.base_url,
            kernel = url_segment(self.kernel),
            args = self.args().join(" "),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden() {
        let b = BootFiles {
            release: "7.2r5",
            base_url: "http://[2401:beef:20::20]/7.x/7.2r5",
            kernel: "vmlinuz",
            updates: false,
            cmdline: Some("ip=[2401:beef:20::99]::[2401:beef:20::1]:64:::none"),
        };
        assert_eq!(
            b.grub_cfg(),
            "# v6build: boot release 7.2r5 over the network.\n# Include this from your grub.cfg or use it as the netboot config.\n# EL7's GRUB2 on UEFI: linuxefi/initrdefi (a newer GRUB2: linux/initrd).\nmenuentry 'Install 7.2r5 (IPv6 only)' --class os {\n\tlinuxefi (http,[2401:beef:20::20])/7.x/7.2r5/vmlinuz inst.stage2=http://[2401:beef:20::20]/7.x/7.2r5 ip=[2401:beef:20::99]::[2401:beef:20::1]:64:::none\n\tinitrdefi (http,[2401:beef:20::20])/7.x/7.2r5/initrd.img\n}\n"
        );
        assert_eq!(
            b.ipxe(),
            "#!ipxe\n# v6build: boot release 7.2r5 over the network.\nifconf -c ipv6\nkernel http://[2401:beef:20::20]/7.x/7.2r5/vmlinuz initrd=initrd.img inst.stage2=http://[2401:beef:20::20]/7.x/7.2r5 ip=[2401:beef:20::99]::[2401:beef:20::1]:64:::none\ninitrd http://[2401:beef:20::20]/7.x/7.2r5/initrd.img\nboot\n"
        );
    }

    #[test]
    fn grub_words_are_quoted_when_they_need_it() {
        assert_eq!(grub_word("ip=[2001:db8::1]::64"), "ip=[2001:db8::1]::64");
        assert_eq!(grub_word("a;b"), "'a;b'");
        assert_eq!(grub_word("$x"), "'$x'");
        assert_eq!(grub_word("it's"), r"'it'\''s'");
        assert_eq!(grub_word(""), "''");
        assert_eq!(url_segment("vm linuz'\"x"), "vm%20linuz%27%22x");
    }

    #[test]
    fn item12_hostile_strings_stay_inside_their_words() {
        let b = BootFiles {
            release: "r'1\nmenuentry evil {",
            base_url: "http://[2001:db8::1]/r",
            kernel: "vmlinuz x",
            updates: true,
            cmdline: Some("a='b c' $(x) ;reboot\n}\ninsmod evil"),
        };
        let g = b.grub_cfg();
        // Exactly the template's lines: nothing injected a line or a block.
        assert_eq!(g.lines().count(), 7, "{g}");
        assert!(
            g.contains(r"'a='\''b' 'c'\''' '$(x)' ';reboot' '}' insmod evil"),
            "{g}"
        );
        assert!(
            g.contains("menuentry 'Install r'\\''1?menuentry evil { (IPv6 only)' --class os {"),
            "{g}"
        );
        assert!(g.contains("vmlinuz%20x"), "{g}");
        let i = b.ipxe();
        assert_eq!(i.lines().count(), 6, "{i}");
    }
}
