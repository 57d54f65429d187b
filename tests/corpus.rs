//! The loader over the real images of the corpus (`SPUR_CORPUS`).

use spur_loader::{load_path, LoadOptions, Placement, PlacementRequest};
use spur_tests::{corpus_dir, CORPUS, NON_SPUR};

#[test]
fn every_corpus_image_loads_at_its_old_base_without_swizzling() {
    let Some(dir) = corpus_dir() else { return };
    for img in CORPUS {
        let heap = load_path(&dir.join(img.file), &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", img.file));
        assert_eq!(heap.header().format, img.format, "{}", img.file);
        assert_eq!(heap.word().bytes(), img.word_bytes);
        assert_eq!(
            heap.placement(),
            Placement::OldBase,
            "{}: {:?}",
            img.file,
            heap.fallback_reason()
        );
        assert!(!heap.swizzled());
        assert_eq!(heap.nil().0, img.old_base);
        assert_eq!(heap.special_objects().0, img.special_objects_oop);
        assert_eq!(heap.count_objects().unwrap(), img.objects, "{}", img.file);
    }
}

#[test]
fn every_corpus_image_loads_relocated_with_the_same_objects() {
    let Some(dir) = corpus_dir() else { return };
    for img in CORPUS {
        for req in [
            PlacementRequest::Relocate,
            PlacementRequest::At(0x2000_0008),
        ] {
            let opts = LoadOptions {
                placement: req,
                ..Default::default()
            };
            let heap = load_path(&dir.join(img.file), &opts)
                .unwrap_or_else(|e| panic!("{}: {e}", img.file));
            assert_eq!(heap.placement(), Placement::Relocated);
            assert!(heap.swizzled());
            assert_ne!(heap.nil().0, img.old_base);
            if let PlacementRequest::At(a) = req {
                assert_eq!(heap.nil().0, a);
            }
            assert_eq!(heap.count_objects().unwrap(), img.objects, "{}", img.file);
        }
    }
}

#[test]
fn non_spur_images_are_refused_by_format_number() {
    let Some(dir) = corpus_dir() else { return };
    for (file, number) in NON_SPUR {
        let e = load_path(&dir.join(file), &LoadOptions::default()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("format {number} is a pre-Spur V3 image")),
            "{file}: {text}"
        );
    }
}
