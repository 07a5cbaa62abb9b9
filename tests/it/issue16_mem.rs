//! Issue 16, items 5 (memory bounded under hostile media), 10 (layers cost
//! linear) and 12 (recipe strings quoted in boot scripts): regression tests
//! that run the real binary. Indexed in `tests/hostile/README.md`.

use std::process::Command;

use v6build_testkit::{oracle, run};

use crate::harness::{Scratch, stderr};

/// Item 12: a command line full of GRUB syntax (quotes, `$`, `;`, braces)
/// that the loader accepts is written into grub.cfg as quoted words, so
/// `grub-script-check` accepts the file and no word escapes its quotes.
#[test]
fn item12_boot_strings_are_quoted_in_grub_cfg() {
    let t = "item12_boot_strings_are_quoted_in_grub_cfg";
    let s = Scratch::new();
    std::fs::write(
        s.path().join("recipes/media/demo/images/pxeboot/vmlinuz"),
        b"kernel bytes\n",
    )
    .unwrap();
    let recipe = "release \"q'1\" { dir \"q\"; epoch 1449187200 }\n\
        media \"demo\" {\n    initrd \"media/demo/images/pxeboot/initrd.img\"\n    \
        kernel \"media/demo/images/pxeboot/vmlinuz\"\n}\n\
        layer \"l\" { file \"/etc/q\" text=\"q\" }\n\
        initrd from=\"demo\" { layers \"l\"; }\n\
        boot base-url=\"http://[2001:db8::1]/q\" {\n    \
        cmdline \"inst.ks='http://x/ks.cfg' a=\\\"b c\\\" $root ;reboot } { \\\\\"\n    grub\n    ipxe\n}\n";
    std::fs::write(s.path().join("recipes/q.kdl"), recipe).unwrap();
    s.ok(&["pin", "recipes/q.kdl"]);
    s.ok(&["build", "recipes/q.kdl"]);
    let grub = std::fs::read_to_string(s.out().join("q/grub.cfg")).unwrap();
    assert!(
        grub.contains(
            r#"'inst.ks='\''http://x/ks.cfg'\''' 'a="b' 'c"' '$root' ';reboot' '}' '{' '\'"#
        ),
        "{grub}"
    );
    assert!(
        grub.contains("menuentry 'Install q'\\''1 (IPv6 only)'"),
        "{grub}"
    );
    let ipxe = std::fs::read_to_string(s.out().join("q/boot.ipxe")).unwrap();
    assert_eq!(ipxe.lines().count(), 5, "{ipxe}");
    if let Some(check) = oracle(t, "grub-script-check") {
        run(Command::new(check).arg(s.out().join("q/grub.cfg")));
    }
}

/// Item 12: a newline in `cmdline` is refused when the recipe loads, with
/// the value's span (the golden diagnostics are in
/// `engine/tests/recipe/item12-*.kdl`); nothing is built.
#[test]
fn item12_newline_in_cmdline_is_a_load_error() {
    let s = Scratch::new();
    let recipe = "release \"n\" { dir \"n\"; epoch 1 }\n\
        media \"demo\" {\n    initrd \"media/demo/images/pxeboot/initrd.img\"\n}\n\
        initrd from=\"demo\"\n\
        boot base-url=\"http://[2001:db8::1]/n\" {\n    cmdline \"ip=dhcp\\ninsmod evil\"\n    grub\n}\n";
    std::fs::write(s.path().join("recipes/n.kdl"), recipe).unwrap();
    let o = s.run(&["build", "recipes/n.kdl"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("control character U+000A"), "{e}");
    assert!(e.contains("n.kdl:7:13"), "{e}");
    assert!(!s.out().join("n").exists());
}
