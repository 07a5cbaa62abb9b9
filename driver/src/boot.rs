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

impl BootFiles<'_> {
    fn args(&self) -> String {
        let mut a = format!("inst.stage2={}", self.base_url);
        if self.updates {
            a.push_str(&format!(" inst.updates={}/updates.img", self.base_url));
        }
        if let Some(c) = self.cmdline.filter(|c| !c.trim().is_empty()) {
            a.push(' ');
            a.push_str(c.trim());
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
        if path.is_empty() {
            format!("(http,{host})/{file}")
        } else {
            format!("(http,{host})/{path}/{file}")
        }
    }

    /// A `grub.cfg` snippet with one menu entry.
    pub fn grub_cfg(&self) -> String {
        format!(
            "# v6build: boot release {release} over the network.\n\
             # Include this from your grub.cfg or use it as the netboot config.\n\
             menuentry 'Install {release} (IPv6 only)' --class os {{\n\
             \tlinux {kernel} {args}\n\
             \tinitrd {initrd}\n\
             }}\n",
            release = self.release,
            kernel = self.grub_url(self.kernel),
            initrd = self.grub_url("initrd.img"),
            args = self.args(),
        )
    }

    /// An iPXE script.
    pub fn ipxe(&self) -> String {
        format!(
            "#!ipxe\n\
             # v6build: boot release {release} over the network.\n\
             kernel {base}/{kernel} initrd=initrd.img {args}\n\
             initrd {base}/initrd.img\n\
             boot\n",
            release = self.release,
            base = self.base_url,
            kernel = self.kernel,
            args = self.args(),
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
            "# v6build: boot release 7.2r5 over the network.\n# Include this from your grub.cfg or use it as the netboot config.\nmenuentry 'Install 7.2r5 (IPv6 only)' --class os {\n\tlinux (http,[2401:beef:20::20])/7.x/7.2r5/vmlinuz inst.stage2=http://[2401:beef:20::20]/7.x/7.2r5 ip=[2401:beef:20::99]::[2401:beef:20::1]:64:::none\n\tinitrd (http,[2401:beef:20::20])/7.x/7.2r5/initrd.img\n}\n"
        );
        assert_eq!(
            b.ipxe(),
            "#!ipxe\n# v6build: boot release 7.2r5 over the network.\nkernel http://[2401:beef:20::20]/7.x/7.2r5/vmlinuz initrd=initrd.img inst.stage2=http://[2401:beef:20::20]/7.x/7.2r5 ip=[2401:beef:20::99]::[2401:beef:20::1]:64:::none\ninitrd http://[2401:beef:20::20]/7.x/7.2r5/initrd.img\nboot\n"
        );
    }
}
