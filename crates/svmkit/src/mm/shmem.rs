//! Shared anonymous memory (Linux: `mm/shmem.c`, what `mmap(MAP_SHARED|MAP_ANONYMOUS)`
//! sets up with `shmem_zero_setup()`).
//!
//! A [`Shmem`] object is an unlinked tmpfs file: a page cache of folios indexed by page
//! offset. Its folios are *not* anonymous (no PageAnon, `mapping` names the object), so
//! every mapping of the object, in every mm, maps the same folio: writes are shared,
//! fork shares the object instead of copying, and nothing is ever COWed. The cache
//! holds one reference per folio; each PTE holds one more. The object lives as long
//! as a VMA uses it, and puts its folios when it goes.
//!
//! Device-exclusive access refuses these folios (they are not anonymous); this is
//! where the model can say so.

use std::collections::BTreeMap;
use std::fmt;

use super::folio::Folio;
use super::page::Mapping;
use super::page_alloc::{Gfp, PhysMem};
use crate::error::Errno;
use crate::sync::{Arc, Mutex};

/// One shared anonymous memory object (Linux: the shmem inode behind a `MAP_SHARED`
/// anonymous mapping, and its `address_space`).
pub struct Shmem {
    id: u64,
    mem: Arc<PhysMem>,
    /// Size in pages (Linux: `i_size >> PAGE_SHIFT`).
    nr_pages: u64,
    /// Linux: the page cache (`i_mapping->i_pages`) and its lock.
    cache: Mutex<BTreeMap<u64, Folio>>,
}

impl Shmem {
    /// A new object of `nr_pages` pages, none allocated yet.
    ///
    /// Linux: `shmem_kernel_file_setup()` via `shmem_zero_setup()`.
    pub(crate) fn new(mem: &Arc<PhysMem>, nr_pages: u64) -> Arc<Shmem> {
        let id = mem.mappings.next_id();
        let s = Arc::new(Shmem {
            id,
            mem: Arc::clone(mem),
            nr_pages,
            cache: Mutex::new(BTreeMap::new()),
        });
        mem.mappings.shmem.lock().insert(id, Arc::downgrade(&s));
        s
    }

    /// The id `folio->mapping` stores.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Size in pages.
    pub fn nr_pages(&self) -> u64 {
        self.nr_pages
    }

    /// The folio at page offset `index`, allocated and zeroed on first use, with a
    /// reference for the caller. `EINVAL` past the end (Linux: `SIGBUS` at fault);
    /// `ENOMEM` when no frame is free.
    ///
    /// Linux: `shmem_get_folio(..., SGP_CACHE)`.
    pub(crate) fn get_folio(&self, index: u64) -> Result<Folio, Errno> {
        if index >= self.nr_pages {
            return Err(Errno::EINVAL);
        }
        let mut cache = self.cache.lock();
        if let Some(&f) = cache.get(&index) {
            self.mem.folio_get(f);
            return Ok(f);
        }
        let f = self
            .mem
            .folio_alloc(0, Gfp::ZERO)
            .map_err(|_| Errno::ENOMEM)?;
        if let Some(head) = self.mem.page(f.head()) {
            head.set_mapping(Some(Mapping::Shmem(self.id)), index);
        }
        // The cache's reference is the allocation's; the caller gets a second one.
        self.mem.folio_get(f);
        cache.insert(index, f);
        Ok(f)
    }

    /// The folios in the cache, by page offset.
    pub fn cached(&self) -> Vec<(u64, Folio)> {
        self.cache.lock().iter().map(|(&i, &f)| (i, f)).collect()
    }
}

impl Drop for Shmem {
    /// Linux: `shmem_evict_inode()` → `shmem_truncate_range()`: the cache's references go.
    fn drop(&mut self) {
        let cache = std::mem::take(&mut *self.cache.lock());
        for (_, f) in cache {
            self.mem.folio_put(f);
        }
        self.mem.mappings.shmem.lock().remove(&self.id);
    }
}

impl PartialEq for Shmem {
    /// Objects are the same when they are the same object (ids are never reused).
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Shmem {}

impl fmt::Debug for Shmem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shmem")
            .field("id", &self.id)
            .field("nr_pages", &self.nr_pages)
            .field("cached", &self.cache.lock().len())
            .finish()
    }
}
