//! Result files: found by id, purged after their lifetime, refused over the size limit, stored on disk on request.

use super::*;

impl Sim {
    /// A file to send, or why not.
    pub fn download(&self, file_id: &str) -> Result<Download, DownloadError> {
        let settings = self.settings();
        let now = self.clock.now();
        let (spec, size, stored) = {
            let jobs = lock(&self.jobs);
            let file = jobs.files.get(file_id).ok_or(DownloadError::NotFound)?;
            if now > file.job_end + secs(settings.file_lifetime_hours * 3600.0) {
                return Err(DownloadError::NotFound);
            }
            (file.spec.clone(), file.size, file.stored.clone())
        };
        let needs_size = settings.content_length || settings.max_file_bytes.is_some();
        let size = match size {
            Some(size) => Some(size),
            None if needs_size => {
                let size: u64 = crate::files::FileBody::new(spec.clone()).map(|c| c.len() as u64).sum();
                if let Some(file) = lock(&self.jobs).files.get_mut(file_id) {
                    file.size = Some(size);
                }
                Some(size)
            }
            None => None,
        };
        if let (Some(size), Some(limit)) = (size, settings.max_file_bytes)
            && size > limit
        {
            return Err(DownloadError::TooLarge(limit));
        }
        Ok(Download { spec, size: if settings.content_length { size } else { None }, stored })
    }

    /// Writes a file's bytes to `path`, as Zuora keeps a finished job's files, and sends them from there from now
    /// on, so that a download costs no rendering (for benchmarks of the clients). Returns the file's size.
    pub fn store_file(&self, file_id: &str, path: &std::path::Path) -> Result<u64, String> {
        let spec = lock(&self.jobs).files.get(file_id).map(|f| f.spec.clone()).ok_or("no such file")?;
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| e.to_string())?);
        let mut size = 0u64;
        for chunk in crate::files::FileBody::new(spec) {
            std::io::Write::write_all(&mut out, &chunk).map_err(|e| e.to_string())?;
            size += chunk.len() as u64;
        }
        std::io::Write::flush(&mut out).map_err(|e| e.to_string())?;
        let mut jobs = lock(&self.jobs);
        let file = jobs.files.get_mut(file_id).ok_or("no such file")?;
        (file.size, file.stored) = (Some(size), Some(path.to_owned()));
        Ok(size)
    }
}
