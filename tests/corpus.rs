//! The loader over the real images of the corpus (`SPUR_CORPUS`).

use spur_loader::{load_path, LoadOptions, Placement, PlacementRequest};
use spur_tests::{address_space, assert_same_objects, corpus_dir, CORPUS, NON_SPUR};

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn every_corpus_image_loads_at_its_old_base_without_swizzling() {
    let dir = corpus_dir();
    let _lock = address_space();
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
        assert_eq!(heap.nil().get(), img.old_base);
        assert_eq!(heap.special_objects().get(), img.special_objects_oop);
        assert_eq!(heap.count_objects().unwrap(), img.objects, "{}", img.file);
    }
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn every_corpus_image_loads_relocated_with_the_same_objects() {
    let dir = corpus_dir();
    let _lock = address_space();
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
            assert_ne!(heap.nil().get(), img.old_base);
            if let PlacementRequest::At(a) = req {
                assert_eq!(heap.nil().get(), a);
            }
            assert_eq!(heap.count_objects().unwrap(), img.objects, "{}", img.file);
            let reference = load_path(&dir.join(img.file), &LoadOptions::default()).unwrap();
            assert_eq!(assert_same_objects(&reference, &heap), img.objects);
        }
    }
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn non_spur_images_are_refused_by_format_number() {
    let dir = corpus_dir();
    let _lock = address_space();
    for (file, number) in NON_SPUR {
        let e = load_path(&dir.join(file), &LoadOptions::default()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("format {number} is a pre-Spur V3 image")),
            "{file}: {text}"
        );
    }
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn every_corpus_image_verifies_intact_in_place_and_relocated() {
    let dir = corpus_dir();
    let _lock = address_space();
    for img in CORPUS {
        for req in [
            PlacementRequest::OldBase,
            PlacementRequest::Relocate,
            PlacementRequest::At(0x2000_0008),
        ] {
            let opts = LoadOptions {
                placement: req,
                ..Default::default()
            };
            let heap = load_path(&dir.join(img.file), &opts).unwrap();
            let report = spur_loader::verify(&heap);
            assert!(
                report.ok(),
                "{} ({req:?}): {:#?}",
                img.file,
                &report.errors[..report.errors.len().min(10)]
            );
            assert_eq!(report.objects, img.objects, "{}", img.file);
            assert!(
                report.classes > 100,
                "{}: {} classes",
                img.file,
                report.classes
            );
            eprintln!(
                "{}: {} objects, {} free chunks ({} bytes), {} classes, {} pages, warnings {:?}",
                img.file,
                report.objects,
                report.free_chunks,
                report.free_bytes,
                report.classes,
                report.class_table_pages,
                &report.warnings[..report.warnings.len().min(3)]
            );
        }
    }
}
