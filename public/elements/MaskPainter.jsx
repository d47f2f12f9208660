// MaskPainter — paint the area to repaint (inpainting) over an image, in the chat.
//
// Chainlit custom element (Chainlit 2.x, react-runner): `props`, `callAction`,
// `submitElement` and `updateElement` are globals injected by Chainlit, not arguments.
//
// Props (built by vision.flow.VisionFlow.painter_props):
//   src       image URL shown under the canvas (a data URL preview is fine)
//   image_id  id of the upload the mask belongs to (sent back as is)
//   width     natural width of the image the mask is for (defaults to the src's)
//   height    natural height of the image (defaults to the src's)
//   lang      "en" | "ja"
//   action    action callback name (default "egaki_mask")
//   submit    true when shown with cl.AskElementMessage: answer with submitElement()
//   sent      true once a mask was sent (the element is then read-only)
//   mask      optional data URL of a proposed mask (white = repaint), painted in at the
//             start so the person can accept or touch it up (masks from words)
//   instruction  optional text typed into the instruction field at the start
//
// "Use this mask" sends a PNG data URL at width x height: white = repaint, black = keep:
//   callAction({name: action, payload: {mask, image_id, instruction}})
// or, with submit: submitElement({mask, image_id, instruction}).
// Pointer events cover mouse, touch and pen; touch-action:none stops the page scrolling.

import { useEffect, useRef, useState } from 'react';
import { Button } from '@/components/ui/button';
import { Brush, Check, Eraser, Trash2, Undo2 } from 'lucide-react';

const LABELS = {
  en: {
    brush: 'Brush',
    eraser: 'Eraser',
    size: 'Size',
    undo: 'Undo',
    clear: 'Clear',
    use: 'Use this mask',
    sending: 'Sending…',
    sent: 'Mask sent ✓',
    empty: 'Paint over the area to change first.',
    failed: 'Sending failed — try again.',
    loading: 'Loading image…',
    broken: 'The image could not be loaded.',
    instruction: 'What should appear there? (optional)',
    hint: 'Painted areas (red) will be repainted; the rest stays.'
  },
  ja: {
    brush: 'ブラシ',
    eraser: '消しゴム',
    size: '太さ',
    undo: '元に戻す',
    clear: '全部消す',
    use: 'このマスクを使う',
    sending: '送信中…',
    sent: 'マスクを送りました ✓',
    empty: '先に変えたい部分を塗ってください。',
    failed: '送信できませんでした。もう一度お試しください。',
    loading: '画像を読み込み中…',
    broken: '画像を読み込めませんでした。',
    instruction: 'そこに何を描きますか？（任意）',
    hint: '赤く塗った部分だけが描き直され、残りはそのままです。'
  }
};
const PAINT = '#ff2d55';
const MAX_UNDO = 20;

export default function MaskPainter() {
  const L = LABELS[String(props.lang || 'en').startsWith('ja') ? 'ja' : 'en'];
  const canvasRef = useRef(null);
  const drawing = useRef(false);
  const last = useRef(null);
  const history = useRef([]);
  const [size, setSize] = useState(null);
  const [tool, setTool] = useState('brush');
  const [brush, setBrush] = useState(40);
  const [instruction, setInstruction] = useState(props.instruction || '');
  const [status, setStatus] = useState(props.sent ? 'sent' : 'idle');
  const [message, setMessage] = useState('');
  const [undoCount, setUndoCount] = useState(0);
  const locked = status === 'sending' || status === 'sent';

  function onImageLoad(e) {
    const img = e.currentTarget;
    const w = Number(props.width) || img.naturalWidth;
    const h = Number(props.height) || img.naturalHeight;
    setSize({ w, h });
  }

  useEffect(() => {
    const canvas = canvasRef.current;
    if (canvas && size) {
      canvas.width = size.w; // the mask is painted at the image's natural size
      canvas.height = size.h;
      history.current = [];
      setUndoCount(0);
      if (props.mask && !props.sent) paintProposed(canvas, size);
    }
  }, [size]);

  function paintProposed(canvas, { w, h }) {
    // The proposed mask, scaled to the image, becomes paint where it is white.
    const img = new Image();
    img.onload = () => {
      const tmp = document.createElement('canvas');
      tmp.width = w;
      tmp.height = h;
      const tctx = tmp.getContext('2d');
      tctx.drawImage(img, 0, 0, w, h);
      const src = tctx.getImageData(0, 0, w, h).data;
      const ctx = canvas.getContext('2d');
      const out = ctx.createImageData(w, h);
      for (let i = 0; i < src.length; i += 4) {
        if (src[i] >= 128) {
          out.data[i] = 255;
          out.data[i + 1] = 45;
          out.data[i + 2] = 85;
          out.data[i + 3] = 255;
        }
      }
      ctx.putImageData(out, 0, 0);
    };
    img.src = props.mask;
  }

  function point(e) {
    const canvas = canvasRef.current;
    const rect = canvas.getBoundingClientRect();
    const scale = canvas.width / rect.width;
    return { x: (e.clientX - rect.left) * scale, y: (e.clientY - rect.top) * scale, scale };
  }

  function snapshot() {
    const canvas = canvasRef.current;
    const ctx = canvas.getContext('2d');
    history.current.push(ctx.getImageData(0, 0, canvas.width, canvas.height));
    if (history.current.length > MAX_UNDO) history.current.shift();
    setUndoCount(history.current.length);
  }

  function stroke(from, to) {
    const ctx = canvasRef.current.getContext('2d');
    ctx.globalCompositeOperation = tool === 'eraser' ? 'destination-out' : 'source-over';
    ctx.strokeStyle = PAINT;
    ctx.fillStyle = PAINT;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.lineWidth = brush * to.scale;
    ctx.beginPath();
    if (from) {
      ctx.moveTo(from.x, from.y);
      ctx.lineTo(to.x, to.y);
      ctx.stroke();
    } else {
      ctx.arc(to.x, to.y, (brush * to.scale) / 2, 0, Math.PI * 2);
      ctx.fill();
    }
  }

  function onPointerDown(e) {
    if (locked || !size) return;
    e.preventDefault();
    e.currentTarget.setPointerCapture(e.pointerId);
    snapshot();
    drawing.current = true;
    const p = point(e);
    stroke(null, p);
    last.current = p;
    setMessage('');
  }

  function onPointerMove(e) {
    if (!drawing.current) return;
    e.preventDefault();
    const p = point(e);
    stroke(last.current, p);
    last.current = p;
  }

  function onPointerUp(e) {
    drawing.current = false;
    last.current = null;
    if (e.currentTarget.hasPointerCapture(e.pointerId)) {
      e.currentTarget.releasePointerCapture(e.pointerId);
    }
  }

  function undo() {
    const prev = history.current.pop();
    if (prev) canvasRef.current.getContext('2d').putImageData(prev, 0, 0);
    setUndoCount(history.current.length);
  }

  function clear() {
    const canvas = canvasRef.current;
    snapshot();
    canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
  }

  function painted() {
    const canvas = canvasRef.current;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) return true;
    return false;
  }

  function maskDataUrl() {
    // White where painted, black elsewhere, opaque, at the natural size.
    const src = canvasRef.current;
    const out = document.createElement('canvas');
    out.width = src.width;
    out.height = src.height;
    const ctx = out.getContext('2d');
    ctx.drawImage(src, 0, 0);
    ctx.globalCompositeOperation = 'source-in';
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.globalCompositeOperation = 'destination-over';
    ctx.fillStyle = '#000000';
    ctx.fillRect(0, 0, out.width, out.height);
    return out.toDataURL('image/png');
  }

  async function send() {
    if (locked || !size) return;
    if (!painted()) {
      setMessage(L.empty);
      return;
    }
    const payload = { mask: maskDataUrl(), image_id: props.image_id, instruction };
    setStatus('sending');
    setMessage('');
    try {
      if (props.submit && typeof submitElement === 'function') {
        submitElement(payload);
      } else {
        const res = await callAction({ name: props.action || 'egaki_mask', payload });
        if (res && res.success === false) throw new Error('action failed');
      }
      setStatus('sent');
      if (!props.submit && typeof updateElement === 'function') {
        // Remember it was used, so a reloaded chat doesn't offer a stale painter.
        Promise.resolve(updateElement({ ...props, sent: true })).catch(() => {});
      }
    } catch (err) {
      setStatus('idle');
      setMessage(L.failed);
    }
  }

  const toolButton = (name, Icon, label) => (
    <Button
      size="sm"
      variant={tool === name ? 'default' : 'outline'}
      onClick={() => setTool(name)}
      disabled={locked}
      aria-pressed={tool === name}
    >
      <Icon className="h-4 w-4 mr-1" />
      {label}
    </Button>
  );

  return (
    <div className="flex flex-col gap-2 w-full max-w-xl">
      <div className="relative w-full select-none rounded-md overflow-hidden border">
        <img
          src={props.src}
          alt=""
          draggable={false}
          onLoad={onImageLoad}
          onError={() => setMessage(L.broken)}
          className="block w-full h-auto"
        />
        <canvas
          ref={canvasRef}
          onPointerDown={onPointerDown}
          onPointerMove={onPointerMove}
          onPointerUp={onPointerUp}
          onPointerCancel={onPointerUp}
          style={{
            position: 'absolute',
            inset: 0,
            width: '100%',
            height: '100%',
            opacity: 0.55,
            touchAction: 'none',
            cursor: locked ? 'default' : 'crosshair'
          }}
        />
      </div>
      {!size && !message && <div className="text-sm text-muted-foreground">{L.loading}</div>}
      {status !== 'sent' && (
        <>
          <div className="flex flex-wrap items-center gap-2">
            {toolButton('brush', Brush, L.brush)}
            {toolButton('eraser', Eraser, L.eraser)}
            <label className="flex items-center gap-1 text-sm">
              {L.size}
              <input
                type="range"
                min={4}
                max={160}
                value={brush}
                onChange={(e) => setBrush(Number(e.target.value))}
                disabled={locked}
                aria-label={L.size}
              />
            </label>
            <Button size="sm" variant="outline" onClick={undo} disabled={locked || !undoCount}>
              <Undo2 className="h-4 w-4 mr-1" />
              {L.undo}
            </Button>
            <Button size="sm" variant="outline" onClick={clear} disabled={locked || !size}>
              <Trash2 className="h-4 w-4 mr-1" />
              {L.clear}
            </Button>
          </div>
          <input
            type="text"
            value={instruction}
            maxLength={500}
            onChange={(e) => setInstruction(e.target.value)}
            placeholder={L.instruction}
            disabled={locked}
            className="w-full rounded-md border bg-background px-2 py-1 text-sm"
          />
          <div className="flex items-center gap-2">
            <Button size="sm" onClick={send} disabled={locked || !size}>
              <Check className="h-4 w-4 mr-1" />
              {status === 'sending' ? L.sending : L.use}
            </Button>
            <span className="text-xs text-muted-foreground">{L.hint}</span>
          </div>
        </>
      )}
      {status === 'sent' && <div className="text-sm">{L.sent}</div>}
      {message && <div className="text-sm text-destructive">{message}</div>}
    </div>
  );
}
