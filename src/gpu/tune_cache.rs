//! The tuner's choices on disk: `tuning.json` in the user's cache directory (XDG's on Linux, the
//! platform's own elsewhere; `GPU_MNIST_CACHE_DIR` names another folder), per adapter and driver,
//! per product and its rows (to the next power of two). A file of another version or of other
//! candidates, or one that does not parse, is ignored with one line, and written anew.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::context::GpuContext;
use super::matmul::{Tiles, Tiling};
use super::shaders::MatmulOp;
use super::tiles::MatmulConfig;
use super::tune::{BUDGET_SECONDS, Product, Search, candidates, search};
use crate::backend::BackendError;

/// The configuration of each of `products` on `ctx`'s adapter: cached, else searched within the
/// budget and cached. `progress` hears what happens, a line at a time.
pub fn tiles(ctx: &GpuContext, products: &[Product], progress: &mut dyn FnMut(&str)) -> Result<Tiles, BackendError> {
    let mut cache = Cache::open(&ctx.info, &ctx.limits, progress);
    tiles_in(ctx, &mut cache, products, progress)
}

/// `tiles` with the choices in `cache`.
pub fn tiles_in(
    ctx: &GpuContext,
    cache: &mut Cache,
    products: &[Product],
    progress: &mut dyn FnMut(&str),
) -> Result<Tiles, BackendError> {
    let mut tiles = Tiles::fixed(Tiling::Register);
    let missing = products.iter().filter(|p| cache.get(p).is_none()).count();
    let share = BUDGET_SECONDS / missing.max(1) as f64;
    if missing > 0 {
        progress(&format!("tuning {missing} matmuls for this adapter (kept in {})", cache.location()));
    }
    for p in products {
        let config = match cache.get(p) {
            Some(c) => c,
            None => {
                let found = search(ctx, p, share, progress)?;
                cache.put(&found);
                found.best
            }
        };
        tiles.chosen.insert(p.key(), config);
    }
    if missing > 0
        && let Err(e) = cache.save()
    {
        progress(&format!("the tuning cache was not written: {e}"));
    }
    Ok(tiles)
}

/// The folder of the cache instead of the platform's (tests use it).
pub const CACHE_DIR_ENV: &str = "GPU_MNIST_CACHE_DIR";
const VERSION: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// Every candidate's name: choices made among other candidates are not kept.
    candidates: String,
    /// Adapter -> product -> choice.
    adapters: BTreeMap<String, BTreeMap<String, Choice>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Choice {
    config: String,
    seconds: f64,
    rows: u32,
}

pub struct Cache {
    path: Option<PathBuf>,
    file: CacheFile,
    adapter: String,
    limits: wgpu::Limits,
}

/// Where the cache lives.
pub fn path() -> Option<PathBuf> {
    let dir = match std::env::var_os(CACHE_DIR_ENV) {
        Some(d) => PathBuf::from(d),
        None => directories::ProjectDirs::from("", "", "gpu-mnist")?.cache_dir().to_path_buf(),
    };
    Some(dir.join("tuning.json"))
}

/// The names of every candidate of every op, in order.
fn candidates_id(limits: &wgpu::Limits) -> String {
    let names: Vec<String> = MatmulOp::ALL.iter().flat_map(|&op| candidates(op, limits)).map(|c| c.name()).collect();
    names.join(";")
}

/// "linear_forward n128 k784 u8 rows65536".
fn product_key(p: &Product) -> String {
    let k = p.key();
    let other = if k.op == MatmulOp::BackwardWeight { "m" } else { "k" };
    let u8 = if k.a_u8 { " u8" } else { "" };
    format!("{} n{} {other}{}{u8} rows{}", k.op.name(), k.n, k.other, p.rows().next_power_of_two())
}

impl Cache {
    /// The cache for `info`'s adapter; `note` hears why an existing file was set aside.
    pub fn open(info: &wgpu::AdapterInfo, limits: &wgpu::Limits, note: &mut dyn FnMut(&str)) -> Cache {
        Cache::open_at(path(), info, limits, note)
    }

    /// `open` of the file at `path` (`None`: no cache folder; nothing is kept).
    pub fn open_at(
        path: Option<PathBuf>,
        info: &wgpu::AdapterInfo,
        limits: &wgpu::Limits,
        note: &mut dyn FnMut(&str),
    ) -> Cache {
        let adapter = format!("{} | {:?} | {} | {}", info.name, info.backend, info.driver, info.driver_info);
        let fresh = CacheFile { version: VERSION, candidates: candidates_id(limits), ..Default::default() };
        let file = match path.as_ref().map(std::fs::read_to_string) {
            None | Some(Err(_)) => fresh,
            Some(Ok(text)) => match serde_json::from_str::<CacheFile>(&text) {
                Ok(f) if f.version == VERSION && f.candidates == fresh.candidates => f,
                Ok(_) => {
                    note(&format!("{}: tuned for other kernels; tuning again", show(&path)));
                    fresh
                }
                Err(e) => {
                    note(&format!("{}: unreadable ({e}); tuning again", show(&path)));
                    fresh
                }
            },
        };
        Cache { path, file, adapter, limits: limits.clone() }
    }

    /// The cached choice for `product`, if any (and if it still names a candidate).
    pub fn get(&self, product: &Product) -> Option<MatmulConfig> {
        let choice = self.file.adapters.get(&self.adapter)?.get(&product_key(product))?;
        candidates(product.op, &self.limits).into_iter().find(|c| c.name() == choice.config)
    }

    pub fn put(&mut self, search: &Search) {
        let seconds = search.timings.iter().find(|t| t.config == search.best).map_or(f64::NAN, |t| t.seconds);
        let choice = Choice { config: search.best.name(), seconds, rows: search.rows };
        self.file.adapters.entry(self.adapter.clone()).or_default().insert(product_key(&search.product), choice);
    }

    /// Writes the cache, atomically.
    pub fn save(&self) -> Result<(), String> {
        let path = self.path.as_ref().ok_or("no cache folder on this platform")?;
        let text = serde_json::to_string_pretty(&self.file).map_err(|e| e.to_string())?;
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn location(&self) -> String {
        show(&self.path)
    }
}

fn show(path: &Option<PathBuf>) -> String {
    path.as_ref().map_or("(no cache folder)".into(), |p| p.display().to_string())
}
