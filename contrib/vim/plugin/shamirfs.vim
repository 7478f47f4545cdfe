" shamirfs.vim: keep documents edited on a shamirfs mount out of Vim's files
" on disk.
"
" Vim keeps text outside the file it edits: ~/.viminfo holds registers (every
" deleted or yanked line), marks and search history; an undo file or a swap
" or backup directory set to a place on disk holds the text too. For a file
" on a fuse.shamirfs mount this plugin turns all of that off: no viminfo for
" the session (set once such a file is opened), no swap, undo or backup file.
" Installed by `meson install` into Vim's system plugin directory; or copy it
" to ~/.vim/plugin/.

if exists('g:loaded_shamirfs') || &compatible
  finish
endif
let g:loaded_shamirfs = 1

function! s:OnShamirfs(file) abort
  let l:dir = fnamemodify(a:file, ':p:h')
  while !isdirectory(l:dir) && l:dir !=# '/'
    let l:dir = fnamemodify(l:dir, ':h')
  endwhile
  return system('findmnt -n -o FSTYPE -T ' . shellescape(l:dir)) =~# 'fuse\.shamirfs'
endfunction

function! s:Protect() abort
  setlocal noswapfile noundofile nobackup nowritebackup
  " 'viminfo' is global: once a document of a mount is open, nothing of this
  " session is written to ~/.viminfo.
  set viminfo=
  if exists('+viminfofile')
    set viminfofile=NONE
  endif
endfunction

augroup shamirfs
  autocmd!
  autocmd BufReadPre,BufNewFile * if s:OnShamirfs(expand('<afile>')) | call s:Protect() | endif
augroup END
