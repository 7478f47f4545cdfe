;;; shamirfs.el --- keep documents on shamirfs mounts out of Emacs's files on disk  -*- lexical-binding: t -*-

;;; Commentary:
;; Emacs keeps text outside the file it edits: backup files and auto-save
;; files (in a directory of your choice, often on disk), lock files, and the
;; names of files in recentf and the auto-save list.  For a file on a
;; fuse.shamirfs mount this turns them off.  Installed by `meson install' into
;; site-lisp; load it from your init file with (require 'shamirfs).

;;; Code:

(defun shamirfs-file-p (file)
  "Non-nil if FILE is on a fuse.shamirfs mount."
  (let ((dir (file-name-directory (expand-file-name file))))
    (while (and dir (not (file-directory-p dir)))
      (setq dir (file-name-directory (directory-file-name dir))))
    (and dir
         (string-match-p "fuse\\.shamirfs"
                         (shell-command-to-string
                          (concat "findmnt -n -o FSTYPE -T " (shell-quote-argument dir)))))))

(defun shamirfs--protect ()
  "Keep this buffer's text out of backup, auto-save and lock files."
  (when (and buffer-file-name (shamirfs-file-p buffer-file-name))
    (setq-local backup-inhibited t)
    (setq-local create-lockfiles nil)
    (auto-save-mode -1)))

(add-hook 'find-file-hook #'shamirfs--protect)
(with-eval-after-load 'recentf
  (add-to-list 'recentf-exclude #'shamirfs-file-p))

(provide 'shamirfs)
;;; shamirfs.el ends here
